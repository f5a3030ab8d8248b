// Package actor makes admin actions provable: whoever sends an Approve,
// Reschedule, SetAdmins or Supersede Update (the portal, the operator
// CLI, a rollout) signs an assertion of who acts, for whom, on which
// workflow, through which channel and when; the ServiceUpdate workflow
// verifies it with the public keys its worker trusts. The assertion is a JWT (RFC 7519) signed with
// Ed25519 (EdDSA, RFC 8037) whose header names the signing key (kid), so
// several keys can be trusted at once while one is rotated out.
//
// Verification is pure (no clock, no I/O): the caller passes the time it
// judges age by, so workflow code can verify with workflow.Now.
package actor

import (
	"errors"
	"fmt"
	"time"
)

// Channel says how an action reached the workflow.
type Channel string

const (
	ChannelPortalLink    Channel = "portal-link"    // a signed link from an email
	ChannelPortalSession Channel = "portal-session" // signed in to the portal by an emailed sign-in link
	ChannelOIDC          Channel = "oidc"           // signed in to the portal through OpenID Connect
	ChannelOperatorCLI   Channel = "operator-cli"   // an operator's starter command, acting for an admin
	// ChannelRollout: a release's rollout, started by the operator it
	// names, asks an older update to give way (Supersede).
	ChannelRollout Channel = "rollout"
)

// Channels lists every channel, for messages naming what is accepted.
var Channels = []Channel{ChannelPortalLink, ChannelPortalSession, ChannelOIDC, ChannelOperatorCLI, ChannelRollout}

func (c Channel) known() bool {
	for _, known := range Channels {
		if c == known {
			return true
		}
	}
	return false
}

// Actions an assertion may allow: one per Update that changes who
// decides or what happens. They are the Update names in lower case so an
// assertion reads on its own.
const (
	ActionApprove    = "approve"
	ActionReschedule = "reschedule"
	ActionSetAdmins  = "set-admins"
	ActionSupersede  = "supersede"
	ActionMove       = "move"
)

// Actions lists every action, for messages naming what is accepted.
var Actions = []string{ActionApprove, ActionReschedule, ActionSetAdmins, ActionSupersede, ActionMove}

// Claims is what an assertion asserts.
type Claims struct {
	// Actor is the e-mail address of the admin who acts (or for whom an
	// operator acts).
	Actor string
	// Operator names the operator acting for the admin (channel
	// operator-cli); empty for an admin acting through the portal.
	Operator string
	Channel  Channel
	// WorkflowID and Action bind the assertion to one Update of one
	// workflow, so it cannot be replayed against another.
	WorkflowID string
	Action     string
	IssuedAt   time.Time
	// Nonce is unique per assertion; a workflow refuses one it has seen.
	Nonce string
}

// check refuses claims that are incomplete or inconsistent, whoever made
// them: the signer before signing, the verifier after.
func (c Claims) check() error {
	switch {
	case c.Actor == "":
		return errors.New("the assertion names no actor (the admin who acts)")
	case !c.Channel.known():
		return fmt.Errorf("the assertion's channel %q is unknown (accepted: %v)", c.Channel, Channels)
	case c.Channel == ChannelOperatorCLI && c.Operator == "":
		return fmt.Errorf("the assertion's channel is %s but it names no operator", ChannelOperatorCLI)
	case c.Channel != ChannelOperatorCLI && c.Operator != "":
		return fmt.Errorf("the assertion names operator %q but its channel %s is an admin's own", c.Operator, c.Channel)
	case c.WorkflowID == "":
		return errors.New("the assertion names no workflow")
	case !actionKnown(c.Action):
		return fmt.Errorf("the assertion's action %q is unknown (accepted: %v)", c.Action, Actions)
	case c.IssuedAt.IsZero():
		return errors.New("the assertion has no issue time")
	case c.Nonce == "":
		return errors.New("the assertion has no nonce")
	}
	return nil
}

func actionKnown(action string) bool {
	for _, known := range Actions {
		if action == known {
			return true
		}
	}
	return false
}
