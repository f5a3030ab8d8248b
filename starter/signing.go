package main

import (
	"cmp"
	"errors"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"github.com/svcupdate/svcupdate/internal/actor"
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

// adminFlag is the flag naming the admin an operator acts for: --as, or
// --admin as before signed actions.
func adminFlag(cmd *cobra.Command, usage string) *string {
	admin := cmd.Flags().String("admin", "", usage)
	cmd.Flags().StringVar(admin, "as", "", "the same as --admin: the admin the operator acts for")
	return admin
}
