package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// bashComplete sources `starter completion bash` in bash, completes line
// (ending where the cursor is) as a shell would on tab, and returns what
// it offers.
func bashComplete(t *testing.T, binary, line string) []string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "starter.bash")
	if err := os.WriteFile(script, []byte(mustRun(t, "completion", "bash")), 0o600); err != nil {
		t.Fatal(err)
	}
	// The script needs the bash-completion package's word splitting; where
	// the package is missing, a stand-in good for the whole words typed
	// here. The script asks the program in COMP_WORDS[0]: the built binary.
	driver := `[[ -r /usr/share/bash-completion/bash_completion ]] && source /usr/share/bash-completion/bash_completion
if ! declare -F _get_comp_words_by_ref >/dev/null; then
	_get_comp_words_by_ref() {
		cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cword=$COMP_CWORD
		words=("${COMP_WORDS[@]}")
	}
fi
source "$1"
COMP_LINE="$2"
COMP_POINT=${#COMP_LINE}
read -r -a COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_WORDS[0]="$3"
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
__start_starter
printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", driver, "bash", script, line, binary)
	// stderr carries compopt's complaint that no shell is completing.
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash completion of %q: %v\n%s", line, err, out)
	}
	var offered []string
	for item := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if item = strings.TrimSpace(item); item != "" {
			offered = append(offered, item)
		}
	}
	return offered
}

func TestBashCompletionOffersNamesFromPostgres(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	t.Setenv("DATABASE_URL", dbURL)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	storetest.Load(t, pool, storetest.Fleet(12, 5))
	binary := testkit.Build(t, "./starter")

	for _, tc := range []struct {
		line string
		want []string
	}{
		{"starter status --instance inst-01", []string{"inst-010", "inst-011"}},
		{"starter approve --admin a@acme.example --instance inst-00", []string{
			"inst-000", "inst-001", "inst-002", "inst-003", "inst-004", "inst-005", "inst-006", "inst-007", "inst-008", "inst-009"}},
		{"starter rollout --version 9.", []string{"9.3.0", "9.2.0", "9.1.0", "9.0.0"}},
		{"starter list --status Fa", []string{"FallbackScheduled", "Failed"}},
		{"starter list -o ", []string{"text", "json"}},
		{"starter resch", []string{"reschedule"}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			if got := bashComplete(t, binary, tc.line); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("offered %q, want %q", got, tc.want)
			}
		})
	}
}

// Every shell gets a script that asks starter for its completions.
func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		out, _, err := runStarter(t, "completion", shell)
		if err != nil || !strings.Contains(out, "__complete") {
			t.Errorf("starter completion %s: %v\n%.300s", shell, err, out)
		}
	}
}
