package fleet

import "regexp"

// Instance and tenant IDs, regions and versions become part of workflow
// IDs ("service-update:<instance>:<version>"), search attributes, email
// subjects and the update command's environment, where the provider's
// tooling may hand them to a shell again (security review H5). The loader
// holds them to a small alphabet: no shell metacharacters, no leading '-'
// (read as a flag), no control, bidi or look-alike characters, no case
// variants of one name, and a length any workflow ID can carry.
var (
	// safeID is an instance ID, a tenant ID or a region.
	safeID = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	// safeVersion is SemVer's MAJOR.MINOR.PATCH without leading zeros,
	// with an optional lower-case pre-release (9.2.0-rc.1), no build
	// metadata ('+' is not safe everywhere an ID goes).
	safeVersion = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9a-z-]+(\.[0-9a-z-]+)*)?$`)
)

// maxVersionLength bounds a version like an ID (with room for a
// pre-release), so every workflow ID stays short.
const maxVersionLength = 64

// id checks an instance ID, tenant ID or region (what names which of
// them); it reports whether the value is usable.
func (v *validator) id(path, what, value string) bool {
	switch {
	case value == "":
		v.add(path, "is required")
	case !safeID.MatchString(value):
		v.add(path, "%q is not accepted: %s is 1 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"+
			" (it becomes part of workflow IDs, search attributes, emails and the update command's environment)", value, what)
	default:
		return true
	}
	return false
}

// version checks a release version; it reports whether it is usable.
func (v *validator) version(path, value string) bool {
	switch {
	case value == "":
		v.add(path, "is required")
	case len(value) > maxVersionLength || !safeVersion.MatchString(value):
		v.add(path, "%q is not accepted: want MAJOR.MINOR.PATCH without leading zeros (9.2.0), optionally with a lower-case pre-release (9.2.0-rc.1), at most %d characters",
			value, maxVersionLength)
	default:
		return true
	}
	return false
}
