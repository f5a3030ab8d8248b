package buildinfo

import (
	"strings"
	"testing"
)

func TestStringNamesVersionCommitAndGo(t *testing.T) {
	info := Info{Version: "v1.2.3", Commit: "0123456789abcdef", Modified: true, GoVersion: "go1.26.8"}
	if got, want := info.String(), "v1.2.3 (commit 0123456789ab-dirty, go1.26.8)"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestReadReportsTheLinkedVersion(t *testing.T) {
	info := Read()
	if info.Version != Version {
		t.Fatalf("Read().Version = %q, want the linked %q", info.Version, Version)
	}
	if !strings.HasPrefix(info.GoVersion, "go") {
		t.Fatalf("Read().GoVersion = %q, want the Go toolchain version", info.GoVersion)
	}
}
