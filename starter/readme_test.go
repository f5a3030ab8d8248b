package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/svcupdate/svcupdate/internal/config"
)

const readmePath = "../README.md"

// The README's command reference sits between these markers and is
// generated from the command tree.
const (
	referenceBegin = "<!-- starter reference: generated from the command tree by go test ./starter -run TestReadmeReference -update -->\n"
	referenceEnd   = "<!-- end of starter reference -->\n"
)

// reference renders every subcommand of the tree with its synopsis, summary
// and flags as Markdown.
func reference(root *cobra.Command) string {
	var b strings.Builder
	for _, c := range everyCommand(root)[1:] {
		if !c.IsAvailableCommand() || c.Name() == "help" {
			continue
		}
		fmt.Fprintf(&b, "#### `%s`\n\n%s.\n\n```\n%s\n```\n", c.CommandPath(), c.Short, c.UseLine())
		var rows []string
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" {
				return
			}
			name := "`--" + f.Name
			if f.Shorthand != "" {
				name = "`-" + f.Shorthand + "`, " + name
			}
			if typ, _ := pflag.UnquoteUsage(f); typ != "" {
				name += " " + typ
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
				def = "`" + f.DefValue + "`"
			}
			cell := strings.NewReplacer("|", `\|`).Replace
			rows = append(rows, fmt.Sprintf("| %s` | %s | %s |", cell(name), def, cell(f.Usage)))
		})
		if len(rows) > 0 {
			fmt.Fprintf(&b, "\n| flag | default | meaning |\n|---|---|---|\n%s\n", strings.Join(rows, "\n"))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestReadmeReference(t *testing.T) {
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	before, rest, ok := strings.Cut(readme, referenceBegin)
	_, after, ok2 := strings.Cut(rest, referenceEnd)
	if !ok || !ok2 {
		t.Fatalf("README.md lacks the markers of the starter reference:\n%s%s", referenceBegin, referenceEnd)
	}
	want := before + referenceBegin + reference(newRootCmd(&env{})) + referenceEnd + after
	if *update {
		if err := os.WriteFile(readmePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if readme != want {
		t.Error("README.md's starter reference is out of step with the command tree: go test ./starter -run TestReadmeReference -update regenerates it")
	}
}

// parseOnly is the command tree with every run replaced by a recorder, so
// a command line is parsed and checked as starter would, and nothing runs.
func parseOnly(t *testing.T, args []string) (ran *cobra.Command, err error) {
	t.Helper()
	root := newRootCmd(&env{stdout: &strings.Builder{}, stderr: &strings.Builder{}})
	root.PersistentPreRunE = nil
	for _, c := range everyCommand(root) {
		if c.RunE != nil && c != root {
			c.RunE = func(cmd *cobra.Command, _ []string) error { ran = cmd; return nil }
		}
	}
	root.SetArgs(args)
	return ran, root.Execute()
}

// readmeExample matches an example command line of the README, with its
// continuation lines.
var readmeExample = regexp.MustCompile(`(?m)^bin/starter ((?:[^\n]*\\\n)*[^\n]*)$`)

// Every example in the README parses through the command tree: its
// subcommand exists and takes each flag shown, optional ones included.
func TestReadmeExamplesParse(t *testing.T) {
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	examples := readmeExample.FindAllStringSubmatch(string(data), -1)
	if len(examples) < 10 {
		t.Fatalf("found %d examples of bin/starter in README.md", len(examples))
	}
	seen := map[string]bool{}
	for _, m := range examples {
		line := strings.ReplaceAll(m[1], "\\\n", " ")
		for _, shell := range []string{" # ", " > ", " | "} { // a comment, a redirection, a pipe
			line, _, _ = strings.Cut(line, shell)
		}
		line = strings.NewReplacer("[", "", "]", "").Replace(line)
		args, err := config.SplitCommand(line)
		if err != nil {
			t.Errorf("%s: %v", line, err)
			continue
		}
		ran, err := parseOnly(t, args)
		if err != nil {
			t.Errorf("README example `bin/starter %s`: %v", line, err)
			continue
		}
		if ran != nil {
			seen[ran.Name()] = true
		}
	}
	for _, c := range newRootCmd(&env{}).Commands() {
		if c.Runnable() && c.Name() != "help" && !seen[c.Name()] && c.Name() != "completion" {
			t.Errorf("README.md shows no example of bin/starter %s", c.Name())
		}
	}
}

// flagSamples is a value each flag takes; a new flag needs one here, so
// every flag of every subcommand is parsed through the tree by a test.
var flagSamples = map[string]string{
	"create-database":          "true",
	"instance":                 "contoso-prod",
	"concurrency":              "8",
	"version":                  "9.2.0",
	"dry-run":                  "true",
	"output":                   "json",
	"admin":                    "ana@contoso.example",
	"as":                       "ana@contoso.example",
	"id":                       "ops-2026-11",
	"note":                     "CAB-1142",
	"primary":                  "2027-03-06T02:00:00+01:00",
	"secondary":                "2027-03-13T02:00:00+01:00",
	"target":                   "9.3.0",
	"json":                     "true",
	"status":                   "approved",
	"tenant":                   "contoso",
	"mandatory":                "false",
	"limit":                    "10",
	"count":                    "true",
	"holders":                  "false",
	"reason":                   "customer freeze",
	"wait":                     "1d",
	"run":                      "r1",
	"print-simulated-failures": "true",
	"pick":                     "true",
	"no-descriptions":          "true",
	"waves":                    "5%,25%,100%",
	"max-failure":              "5%",
	"pause":                    "true",
	"resume":                   "true",
	"move-to":                  "2027-03-20 02:00",
	"abort":                    "true",
}

func TestEveryFlagParsesThroughTheTree(t *testing.T) {
	for _, c := range everyCommand(newRootCmd(&env{}))[1:] {
		if !c.Runnable() || c.Name() == "help" {
			continue
		}
		path := strings.Fields(c.CommandPath())[1:]
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			sample, ok := flagSamples[f.Name]
			if !ok {
				t.Errorf("%s --%s has no sample value in flagSamples", c.CommandPath(), f.Name)
				return
			}
			args := append(append([]string{}, path...), "--"+f.Name+"="+sample)
			if c.Name() == "load" {
				args = append(args, "fleet.json")
			}
			ran, err := parseOnly(t, args)
			if err != nil || ran == nil || ran.CommandPath() != c.CommandPath() {
				t.Errorf("starter %s: ran %v, error %v", strings.Join(args, " "), ran, err)
				return
			}
			if !ran.Flags().Changed(f.Name) {
				t.Errorf("starter %s did not set --%s", strings.Join(args, " "), f.Name)
			}
		})
	}
}
