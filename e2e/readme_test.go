package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/testkit"
)

func readme(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The README shows a newcomer every subcommand with an example.
func TestReadmeShowsEverySubcommand(t *testing.T) {
	t.Parallel()
	readme := readme(t)
	for _, name := range subcommands(t) {
		if !strings.Contains(readme, "bin/starter "+name) {
			t.Errorf("README.md has no example of `bin/starter %s`", name)
		}
	}
}

// The README's configuration table is what a newcomer reads first; it must
// name every variable the programs accept.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	readme := readme(t)
	for _, v := range config.Variables() {
		if !strings.Contains(readme, "| `"+v.Name+"` |") {
			t.Errorf("README.md has no configuration table row for %s", v.Name)
		}
	}
}

// subcommandLine is a subcommand's line under "Available Commands:" in
// `starter -h`: its name, indented by two spaces, then its summary.
var subcommandLine = regexp.MustCompile(`(?m)^  ([a-z-]+) +\S`)

// subcommands lists the subcommands as `starter -h` shows them.
func subcommands(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command(testkit.Build(t, "./starter"), "-h").Output()
	if err != nil {
		t.Fatalf("starter -h: %v", err)
	}
	_, listed, _ := strings.Cut(string(out), "Available Commands:\n")
	listed, _, _ = strings.Cut(listed, "\n\n")
	var names []string
	for _, m := range subcommandLine.FindAllStringSubmatch(listed, -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		t.Fatalf("starter -h lists no subcommand:\n%s", out)
	}
	return names
}
