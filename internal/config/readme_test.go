package config

import (
	"os"
	"strings"
	"testing"
)

// The README's configuration table is what a newcomer reads first; it must
// name every variable the programs accept.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Variables() {
		if !strings.Contains(string(readme), "| `"+v.Name+"` |") {
			t.Errorf("README.md has no configuration table row for %s", v.Name)
		}
	}
}
