package testkit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildAtCommit builds the module's programs pkgs ("./worker") as they
// were at commit, such as an earlier release's, and returns their binaries
// by package. The binaries are kept in the module's ignored bin/ directory,
// in bin/commit-<commit>/, so a later run builds only what is missing. It
// reads the commit's tree with git, so it needs the repository's history:
// without the commit (a shallow clone, a source archive) it fails the test
// saying so.
func BuildAtCommit(t testing.TB, commit string, pkgs ...string) map[string]string {
	t.Helper()
	root := moduleRoot(t)
	dir := filepath.Join(root, "bin", "commit-"+commit)
	binaries := map[string]string{}
	var missing []string
	for _, pkg := range pkgs {
		binaries[pkg] = filepath.Join(dir, filepath.Base(pkg))
		if _, err := os.Stat(binaries[pkg]); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return binaries
	}

	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		t.Fatalf("git cannot find commit %s in %s (%v: %s): this test builds programs as they were at that commit "+
			"and needs the repository's history (a full clone, not a shallow one or a source archive)",
			commit, root, err, bytes.TrimSpace(out))
	}
	source := t.TempDir()
	extractCommit(t, root, commit, source)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Built beside the cache and renamed into it, so neither an interrupted
	// build nor two test binaries building at once leave a partial binary
	// where a later run would take it.
	staging, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(staging)
	// The extracted tree is no repository: no VCS stamp to look for.
	build := exec.Command("go", append([]string{"build", "-buildvcs=false", "-o", staging + string(filepath.Separator)}, missing...)...)
	build.Dir = source
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %v at commit %s: %v\n%s", missing, commit, err, out)
	}
	for _, pkg := range missing {
		if err := os.Rename(filepath.Join(staging, filepath.Base(pkg)), binaries[pkg]); err != nil {
			t.Fatal(err)
		}
	}
	return binaries
}

// extractCommit writes the tree of commit in the repository at root into
// dir.
func extractCommit(t testing.TB, root, commit, dir string) {
	t.Helper()
	tarball := filepath.Join(t.TempDir(), "tree.tar")
	for _, step := range []*exec.Cmd{
		exec.Command("git", "-C", root, "archive", "--format=tar", "-o", tarball, commit),
		exec.Command("tar", "-x", "-f", tarball, "-C", dir),
	} {
		if out, err := step.CombinedOutput(); err != nil {
			t.Fatalf("extract the tree of %s: %s: %v\n%s", commit, step, err, out)
		}
	}
}
