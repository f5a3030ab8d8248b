package main

import (
	"os"
	"strings"
	"testing"
)

// The README shows a newcomer every subcommand with an example.
func TestReadmeShowsEverySubcommand(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(string(readme), "bin/starter "+c.name) {
			t.Errorf("README.md has no example of `bin/starter %s`", c.name)
		}
	}
}
