package workflows

// The contract continued (api.go is at the size limit): the payloads of
// the Supersede Update and of the activities added since release 2.

// SupersedeInput is the Supersede Update's payload: a rollout of a newer
// release asks an optional update that has not started to close as
// Superseded, so the newer update can hold the instance.
type SupersedeInput struct {
	// TargetVersion is the superseding update's target; it must be newer
	// than this update's target.
	TargetVersion string `json:"targetVersion"`
	// RequestedBy names who asks (recorded in the audit log), such as
	// "rollout of 9.3.0 by starter@host".
	RequestedBy string `json:"requestedBy"`
}

// CheckInstanceInput asks what the instance runs now and what the update
// policy asks of it for TargetVersion, against the releases Postgres
// holds now.
type CheckInstanceInput struct {
	InstanceID    string `json:"instanceId"`
	TargetVersion string `json:"targetVersion"`
}

// CheckInstanceResult is the instance as Postgres records it just before
// an attempt.
type CheckInstanceResult struct {
	CurrentVersion string `json:"currentVersion"`
	// UpToDate: the instance runs the target or a later release, so the
	// update is not needed.
	UpToDate bool `json:"upToDate,omitempty"`
	// Mandatory: the instance is two or more releases behind the target
	// (n-2), so the update runs without approval.
	Mandatory bool `json:"mandatory,omitempty"`
}

// AbandonUpdateInput names the update whose reservations and claim on
// the instance a rollout made, to be given back.
type AbandonUpdateInput struct {
	InstanceID     string `json:"instanceId"`
	OfferedVersion string `json:"offeredVersion"`
}

// AbandonUpdateResult says how many reservations were given back.
type AbandonUpdateResult struct {
	Released int `json:"released"`
}
