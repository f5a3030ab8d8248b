package config

import (
	"log/slog"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"syscall"

	"github.com/svcupdate/svcupdate/internal/codec"
)

// PayloadKeys are the keys of PAYLOAD_KEYS, newest first.
type PayloadKeys []codec.Key

// Decode implements envconfig.Decoder.
func (k *PayloadKeys) Decode(value string) error {
	keys, err := codec.ParseKeys(value)
	if err != nil {
		return &valueError{err.Error()}
	}
	*k = PayloadKeys(keys)
	return nil
}

// LogValue names the keys, never their bytes.
func (k PayloadKeys) LogValue() slog.Value { return codec.Keys(k).LogValue() }

// variableName is what EXECUTOR_PASS_ENV accepts as a variable's name.
var variableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validateExecutorIsolation checks EXECUTOR_USER and EXECUTOR_PASS_ENV and
// looks the user up once, at start.
func (c *Config) validateExecutorIsolation() error {
	for _, name := range c.ExecutorPassEnv {
		if !variableName.MatchString(name) {
			return invalid("EXECUTOR_PASS_ENV", name, "not a variable name")
		}
		if slices.ContainsFunc(Variables(), func(v Variable) bool { return v.Name == name }) {
			return invalid("EXECUTOR_PASS_ENV", name, "the worker's own configuration (credentials among it) never reaches the command")
		}
	}
	if c.ExecutorUser == "" {
		return nil
	}
	if c.Executor != ExecutorCommand {
		return invalid("EXECUTOR_USER", c.ExecutorUser, "only the command executor runs programs, and EXECUTOR is "+string(c.Executor))
	}
	u, err := user.Lookup(c.ExecutorUser)
	if err != nil {
		if u, err = user.LookupId(c.ExecutorUser); err != nil {
			return invalid("EXECUTOR_USER", c.ExecutorUser, "no such user")
		}
	}
	uid, uidErr := strconv.ParseUint(u.Uid, 10, 32)
	gid, gidErr := strconv.ParseUint(u.Gid, 10, 32)
	if uidErr != nil || gidErr != nil {
		return invalid("EXECUTOR_USER", c.ExecutorUser, "the user has no numeric uid and gid")
	}
	// Groups: none beyond the user's own, so nothing of the worker's group
	// membership carries over.
	c.ExecutorCredential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	return nil
}
