package notice

import (
	"regexp"
	"strings"
	"unicode"
)

// What an update command printed reaches the admins and extra recipients
// of the fallback and failed emails, people outside the provider, so an
// email carries only a summary of an attempt's error (security review
// H2): its first non-blank line, without control or invisible formatting
// characters, with anything that looks like an address or a secret
// replaced by "[removed]", at most maxSummaryLength characters. The full text
// stays where operators read it: the audit log, the updates projection and
// the Status query.

// maxSummaryLength bounds the summary, in characters.
const maxSummaryLength = 160

// removed stands in for what the summary leaves out.
const removed = "[removed]"

// Patterns of what the summary removes, applied in this order.
var (
	// scheme://anything: URLs, connection strings with their passwords.
	urlPattern = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://\S+`)
	// user@host, e-mail addresses, scp-style targets.
	userAtHostPattern = regexp.MustCompile(`\S+@\S+`)
	// key=value or key: value where the key names a secret.
	secretAssignmentPattern = regexp.MustCompile(`(?i)\b([a-z0-9_.-]*(?:pass(?:word|wd)?|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credential|auth(?:orization)?)[a-z0-9_.-]*)\s*[=:]\s*(?:bearer\s+|basic\s+)?("[^"]*"|'[^']*'|\S+)`)
	// Bearer and Basic credentials without a key before them.
	bearerPattern = regexp.MustCompile(`(?i)\b(?:bearer|basic)\s+\S+`)
	// IPv4 addresses, with a port.
	ipPattern = regexp.MustCompile(`\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b`)
	// host names with a dot and a letter TLD (db-eu-7.internal:5432); a
	// file name such as upgrade.sh goes too, versions (9.2.0) stay.
	hostPattern = regexp.MustCompile(`(?i)\b(?:[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?\.)+[a-z][a-z0-9-]*(?::\d+)?\b`)
	// candidate tokens: long runs of key-like characters.
	tokenPattern = regexp.MustCompile(`[A-Za-z0-9+/_.=-]{20,}`)
)

// summary is the one line of an attempt's error that an email may show.
func summary(text string) string {
	line := ""
	for l := range strings.Lines(text) {
		if strings.TrimSpace(l) != "" {
			line = l
			break
		}
	}
	line = strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return -1
		}
		return r
	}, line)
	line = urlPattern.ReplaceAllString(line, removed)
	line = userAtHostPattern.ReplaceAllString(line, removed)
	line = secretAssignmentPattern.ReplaceAllString(line, "${1}="+removed)
	line = bearerPattern.ReplaceAllString(line, removed)
	line = ipPattern.ReplaceAllString(line, removed)
	line = hostPattern.ReplaceAllString(line, removed)
	line = tokenPattern.ReplaceAllStringFunc(line, func(token string) string {
		// A token mixes letters and digits; a long plain word is kept.
		if strings.ContainsFunc(token, unicode.IsDigit) && strings.ContainsFunc(token, unicode.IsLetter) {
			return removed
		}
		return token
	})
	return truncate(strings.Join(strings.Fields(line), " "), maxSummaryLength)
}
