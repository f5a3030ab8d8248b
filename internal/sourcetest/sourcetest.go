// Package sourcetest reads a package's own source for tests that check how
// it is written, such as a name that must stand only once as a literal.
package sourcetest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// StringLiteral is one string literal of a Go file.
type StringLiteral struct {
	Position string // file:line:column
	Value    string // unquoted
}

// StringLiterals returns every string literal of the non-test Go files in
// dir. It fails the test when there is none, so that a check over them
// cannot pass by reading the wrong directory.
func StringLiterals(t testing.TB, dir string) []StringLiteral {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var literals []StringLiteral
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			value, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatalf("%s: %v", fset.Position(lit.Pos()), err)
			}
			literals = append(literals, StringLiteral{Position: fset.Position(lit.Pos()).String(), Value: value})
			return true
		})
	}
	if len(literals) == 0 {
		t.Fatalf("no string literals found in %s", dir)
	}
	return literals
}
