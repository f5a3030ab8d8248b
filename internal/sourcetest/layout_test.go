package sourcetest

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// maxFileLines keeps a non-test file small enough to hold one concern.
const maxFileLines = 500

// moduleFiles lists the module's tracked non-test Go files, relative to the
// module root, which it returns too.
func moduleFiles(t *testing.T) (root string, files []string) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root = filepath.Dir(strings.TrimSpace(string(out)))
	listed, err := exec.Command("git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard", "*.go").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, f := range strings.Fields(string(listed)) {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil || strings.HasSuffix(f, "_test.go") {
			continue
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatal("no Go files found: the check would pass by reading nothing")
	}
	return root, files
}

// One file, one concern: no non-test file grows past maxFileLines.
func TestNoFileOverTheLimit(t *testing.T) {
	root, files := moduleFiles(t)
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(data, []byte("\n")); n > maxFileLines {
			t.Errorf("%s has %d lines, more than %d: split it along its concerns", f, n, maxFileLines)
		}
	}
}

// The package name namespaces identifiers: a top-level name that starts
// with its file's name (storeMapError in store.go) is a package waiting to be
// born. The exact file name (Store in store.go) is fine.
func TestNoIdentifierCarriesItsFileName(t *testing.T) {
	root, files := moduleFiles(t)
	for _, f := range files {
		prefix := strings.TrimSuffix(filepath.Base(f), ".go")
		if strings.ContainsAny(prefix, "_.-") {
			prefix = prefix[:strings.IndexAny(prefix, "_.-")]
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, f), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range topLevelNames(parsed) {
			if carriesPrefix(name, prefix) {
				t.Errorf("%s: %s carries its file's name as a prefix", f, name)
			}
		}
	}
}

func carriesPrefix(name, prefix string) bool {
	if len(name) <= len(prefix) || !strings.EqualFold(name[:len(prefix)], prefix) {
		return false
	}
	return unicode.IsUpper(rune(name[len(prefix)]))
}

func topLevelNames(f *ast.File) []string {
	var names []string
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				names = append(names, d.Name.Name)
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					names = append(names, s.Name.Name)
				case *ast.ValueSpec:
					for _, n := range s.Names {
						names = append(names, n.Name)
					}
				}
			}
		}
	}
	return names
}

// sqlStatement matches the start of an SQL statement in a string literal.
var sqlStatement = regexp.MustCompile(`\b(SELECT|INSERT INTO|DELETE FROM|CREATE (DATABASE|TABLE|INDEX)|ALTER TABLE|UPDATE \w+ SET)\b`)

// Every SQL statement of the product lives in internal/store; migrations and
// their bookkeeping live in schemas/.
func TestSQLOnlyInTheStore(t *testing.T) {
	root, files := moduleFiles(t)
	for _, f := range files {
		if strings.HasPrefix(f, "internal/store/") || strings.HasPrefix(f, "schemas/") {
			continue
		}
		fset := token.NewFileSet()
		parsed, err := parser.ParseFile(fset, filepath.Join(root, f), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(parsed, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && sqlStatement.MatchString(lit.Value) {
				t.Errorf("%s:%d: SQL outside internal/store: %.60s", f, fset.Position(lit.Pos()).Line, lit.Value)
			}
			return true
		})
	}
}
