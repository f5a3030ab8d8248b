package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/user"
	"time"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/workflows"
)

// signed returns an admin Update's input with the assertion the operator
// signs for it (channel operator-cli, ACTION_SIGNING_KEY): acting for the
// admin the input names, or, for SetAdmins, on the operator's own
// authority. Other inputs are returned as they are.
func (e *env) signed(workflowID string, input any) (any, error) {
	var err error
	switch in := input.(type) {
	case workflows.ApproveInput:
		in.Assertion, err = e.sign(workflowID, actor.ActionApprove, in.Admin)
		return in, err
	case workflows.RescheduleInput:
		in.Assertion, err = e.sign(workflowID, actor.ActionReschedule, in.Admin)
		return in, err
	case workflows.SetAdminsInput:
		in.Assertion, err = e.sign(workflowID, actor.ActionSetAdmins, "")
		return in, err
	}
	return input, nil
}

// sign signs action on workflowID by the operator for admin ("" for the
// operator itself).
func (e *env) sign(workflowID, action, admin string) (string, error) {
	signer := e.cfg.ActionSigningKey.Signer
	if signer == nil {
		return "", errors.New("ACTION_SIGNING_KEY is not set: the workflow accepts only signed admin actions (make a key pair with `starter keys generate`; README, \"Signing keys\")")
	}
	operator := e.operator()
	return signer.Sign(actor.Claims{
		Actor: cmp.Or(admin, operator), Operator: operator, Channel: actor.ChannelOperatorCLI,
		WorkflowID: workflowID, Action: action, IssuedAt: time.Now(),
	})
}

// operator names who runs the starter: ACTION_OPERATOR, or user@host.
func (e *env) operator() string {
	if e.cfg.ActionOperator != "" {
		return e.cfg.ActionOperator
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return name + "@" + hostname()
}

func runKeys(_ context.Context, e *env, args []string) error {
	fs := newFlagSet("keys")
	keyID := fs.String("id", "", "the new key's ID, named in every assertion it signs, such as ops-2026-11 (required)")
	if err := parseFlags(fs, e, args, 1); err != nil {
		return err
	}
	if fs.Arg(0) != "generate" {
		return cli.Usagef("keys: unknown action %q (accepted: generate)", fs.Arg(0))
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	signing, trusted, err := actor.GenerateKeyPair(*keyID)
	if err != nil {
		return cli.Usagef("keys generate: %v", err)
	}
	fmt.Fprintf(e.stdout, "# the signer's secret (starter, portal): keep it in a secret store\nACTION_SIGNING_KEY=%s\n", signing)
	fmt.Fprintf(e.stdout, "# every worker: add it to the trusted keys (comma-separated while rotating)\nACTION_TRUSTED_KEYS=%s\n", trusted)
	return nil
}
