package workflows

// EligibilityLevel is what the update policy asks of an instance for one
// target version.
type EligibilityLevel int

const (
	// EligibilityNone: the instance runs the target or a newer version.
	EligibilityNone EligibilityLevel = iota
	// EligibilityOptional: one version behind (n-1); the update runs
	// only when an admin approves it.
	EligibilityOptional
	// EligibilityMandatory: two or more versions behind (n-2); the update
	// runs without approval, admins may only move it.
	EligibilityMandatory
)

func (e EligibilityLevel) String() string {
	switch e {
	case EligibilityOptional:
		return "optional"
	case EligibilityMandatory:
		return "mandatory"
	}
	return "not eligible"
}

// Eligibility applies the update policy. Ordinals are positions in the
// version history (1, 2, 3, ... with no gaps), not the raw release order
// values, which may skip numbers.
func Eligibility(currentOrdinal, targetOrdinal int) EligibilityLevel {
	switch {
	case currentOrdinal >= targetOrdinal:
		return EligibilityNone
	case currentOrdinal == targetOrdinal-1:
		return EligibilityOptional
	default:
		return EligibilityMandatory
	}
}
