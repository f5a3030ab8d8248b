package config

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/svcupdate/svcupdate/internal/duration"
	"github.com/svcupdate/svcupdate/workflows"
)

// FailingAttempts says which attempts of an instance's update the simulated
// executor fails.
type FailingAttempts string

// primary and secondary are the workflow contract's slot roles; all is both.
const (
	FailPrimary   = FailingAttempts(workflows.SlotPrimary)
	FailSecondary = FailingAttempts(workflows.SlotSecondary)
	FailAll       = FailingAttempts("all")
)

// SimulatedFailures maps an instance ID to the attempts the simulated
// executor fails for it (activities.SimulatedExecutor decides); instances
// not listed succeed.
type SimulatedFailures map[string]FailingAttempts

// String renders f in the SIMULATED_FAILURES syntax, instances sorted.
func (f SimulatedFailures) String() string {
	items := make([]string, 0, len(f))
	for id, attempts := range f {
		items = append(items, id+":"+string(attempts))
	}
	sort.Strings(items)
	return strings.Join(items, ",")
}

// valueError says what is wrong in a value a Decode method of this
// package read (which item of SIMULATED_FAILURES, say).
type valueError struct{ msg string }

func (e *valueError) Error() string { return e.msg }

// Decode implements envconfig.Decoder for "id:primary|secondary|all,...".
// Spaces around items are ignored; an instance may be listed once.
func (f *SimulatedFailures) Decode(value string) error {
	failures := SimulatedFailures{}
	for item := range strings.SplitSeq(value, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		sep := strings.LastIndex(item, ":")
		if sep < 0 {
			return &valueError{fmt.Sprintf("item %q has no :primary, :secondary or :all", item)}
		}
		id, attempts := strings.TrimSpace(item[:sep]), FailingAttempts(strings.TrimSpace(item[sep+1:]))
		if id == "" {
			return &valueError{fmt.Sprintf("item %q has no instance ID", item)}
		}
		switch attempts {
		case FailPrimary, FailSecondary, FailAll:
		default:
			return &valueError{fmt.Sprintf("item %q: %q is not primary, secondary or all", item, attempts)}
		}
		if _, dup := failures[id]; dup {
			return &valueError{fmt.Sprintf("instance %q is listed twice", id)}
		}
		failures[id] = attempts
	}
	*f = failures
	return nil
}

// SplitCommand splits EXECUTOR_COMMAND into a program and its arguments the
// way a POSIX shell splits words: blanks separate words, single quotes keep
// everything literal, double quotes keep everything but \" and \\, and a
// backslash outside quotes escapes the next character. Nothing else of a
// shell applies (no variables, globs, pipes or redirections), so the
// configured value runs exactly as written; a command that needs a shell
// says so: sh -c '...'.
func SplitCommand(command string) ([]string, error) {
	var (
		words   []string
		word    strings.Builder
		inWord  bool
		quote   rune // 0, '\'' or '"'
		escaped bool
	)
	for _, r := range command {
		switch {
		case escaped:
			word.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				word.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				word.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '\\':
			escaped, inWord = true, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	switch {
	case escaped:
		return nil, fmt.Errorf("ends with a lone backslash")
	case quote != 0:
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}

// FormatDuration writes d the way a person would configure it: 720h, 90m,
// 30s rather than 720h0m0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// formatDurations writes offsets the way REMINDER_OFFSETS is written: in days.
func formatDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = duration.FormatDays(d)
	}
	return strings.Join(parts, ",")
}
