package sendgrid

import (
	"fmt"
	"log/slog"
	"strings"
)

// defaultHost is SendGrid's API base URL.
const defaultHost = "https://api.sendgrid.com"

// Config configures the SendGrid client. The worker fills it from
// SENDGRID_HOST, SENDGRID_API_KEY and MAIL_FROM.
type Config struct {
	// Host is the API base URL; empty means defaultHost.
	Host string
	// APIKey empty keeps the Notifier in outbox mode: every notice is
	// rendered, stored and logged, and nothing is sent.
	APIKey string
	// From is the sender, "Name <address>" or a bare address.
	From string
}

// LogValue keeps the API key out of every log line Config reaches.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("sendgridHost", c.host()),
		slog.Bool("sendgridAPIKeySet", c.APIKey != ""),
		slog.String("mailFrom", c.From),
	)
}

// String keeps the API key out of fmt's %v and %+v.
func (c Config) String() string {
	return fmt.Sprintf("sendgrid.Config{Host: %q, APIKey set: %t, From: %q}", c.host(), c.APIKey != "", c.From)
}

func (c Config) host() string {
	if c.Host == "" {
		return defaultHost
	}
	return strings.TrimRight(c.Host, "/")
}
