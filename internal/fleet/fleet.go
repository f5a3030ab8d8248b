// Package fleet reads the fleet file: the releases with their slots, the
// tenants and the instances with their recipients, as the operator keeps
// them in one JSON document. A file is accepted whole or refused whole, with
// every problem named by line and column (syntax) or field path (content),
// so an operator fixes all of them in one pass.
package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"reflect"
	"strings"
	"time"
	_ "time/tzdata" // validate zone names the same way on every machine

	"github.com/svcupdate/svcupdate/internal/duration"
	"github.com/svcupdate/svcupdate/workflows"
)

// Instance kinds.
const (
	KindProduction = "production"
	KindSandbox    = "sandbox"
)

// Fleet is a parsed and validated fleet file. Times are UTC.
type Fleet struct {
	Releases  []Release  `json:"releases"`
	Tenants   []Tenant   `json:"tenants"`
	Instances []Instance `json:"instances"`
}

// Release is one version in the history. Old releases may come without a
// period and slots: they are listed so the version order is known.
type Release struct {
	Version     string    `json:"version"`
	Name        string    `json:"name"`
	Order       int       `json:"order"` // position in the history; higher is newer
	PeriodStart time.Time `json:"periodStart,omitzero"`
	PeriodEnd   time.Time `json:"periodEnd,omitzero"`
	Slots       []Slot    `json:"slots,omitempty"`
}

// HasPeriod reports whether the release has a release period.
func (r Release) HasPeriod() bool { return !r.PeriodStart.IsZero() }

// Slot is an update window a release offers in one region.
type Slot struct {
	Region   string    `json:"region"`
	Start    time.Time `json:"start"`
	Window   Duration  `json:"window"`
	Capacity int       `json:"capacity"`
}

// End is when the slot's window closes.
func (s Slot) End() time.Time { return s.Start.Add(time.Duration(s.Window)) }

// Duration is a time.Duration written in Go syntax or days ("12h", "90m", "1d") in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "12h" or "1d".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"12h\": %w", err)
	}
	v, err := duration.Parse(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Tenant owns instances.
type Tenant struct {
	ID   string `json:"id" jsonschema:"required,minLength=1"`
	Name string `json:"name" jsonschema:"required,minLength=1"`
}

// Instance is one managed service instance and who hears about its updates.
type Instance struct {
	ID              string   `json:"id" jsonschema:"required,minLength=1"`
	Tenant          string   `json:"tenant" jsonschema:"required" jsonschema_description:"the id of a tenant in this file"`
	Name            string   `json:"name" jsonschema:"required,minLength=1"`
	Kind            string   `json:"kind" jsonschema:"required,enum=production,enum=sandbox"` // KindProduction | KindSandbox
	Region          string   `json:"region" jsonschema:"required,minLength=1" jsonschema_description:"slots are offered per region"`
	TimeZone        string   `json:"timeZone" jsonschema:"required,example=Europe/Berlin" jsonschema_description:"IANA time zone"` // IANA name
	Version         string   `json:"version" jsonschema:"required" jsonschema_description:"the version it runs: the version of a release in this file"`
	Admins          []string `json:"admins" jsonschema:"required,minItems=1" jsonschema_description:"emails of the admins who approve and reschedule its updates"`
	Users           []string `json:"users" jsonschema_description:"emails told when an update starts and ends"`
	ExtraRecipients []string `json:"extraRecipients" jsonschema_description:"emails that get the admins' notices too"`
}

// fileDocument is the file as written: times and windows stay strings
// here so a malformed one is reported with its field path, which the JSON
// decoder cannot do for errors raised inside time.Time.
type fileDocument struct {
	Releases  []fileRelease `json:"releases" jsonschema:"required,minItems=1"`
	Tenants   []Tenant      `json:"tenants"`
	Instances []Instance    `json:"instances"`
}

type fileRelease struct {
	Version     string     `json:"version" jsonschema:"required,minLength=1,example=9.2.0"`
	Name        string     `json:"name" jsonschema:"required,minLength=1" jsonschema_description:"display name, such as Spring '27"`
	Order       *int       `json:"order" jsonschema:"required" jsonschema_description:"position in the version history; higher is newer"`
	PeriodStart string     `json:"periodStart" jsonschema:"format=date-time" jsonschema_description:"release period start (RFC 3339); with periodEnd, required when the release has slots"`
	PeriodEnd   string     `json:"periodEnd" jsonschema:"format=date-time" jsonschema_description:"release period end (RFC 3339)"`
	Slots       []fileSlot `json:"slots" jsonschema_description:"update windows offered, per region"`
}

type fileSlot struct {
	Region   string `json:"region" jsonschema:"required,minLength=1"`
	Start    string `json:"start" jsonschema:"required,format=date-time" jsonschema_description:"window start (RFC 3339)"`
	Window   string `json:"window" jsonschema:"pattern=^([0-9]+(\\.[0-9]+)?d)?([0-9.]+(ns|us|µs|ms|s|m|h))*$,example=12h" jsonschema_description:"window length: a Go duration or days (12h, 90m, 1d); default 12h"`
	Capacity *int   `json:"capacity" jsonschema:"required,minimum=0" jsonschema_description:"how many instances may update in this window; 0 withdraws the slot"`
}

// SyntaxError is a fleet file that is not valid JSON or has a value of the
// wrong type; Line and Column are 1-based.
type SyntaxError struct {
	Line, Column int
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// Problem is one thing wrong in a well-formed fleet file.
type Problem struct {
	Path string // e.g. instances[3].timeZone
	Msg  string
}

func (p Problem) String() string { return p.Path + ": " + p.Msg }

// ValidationError lists every problem found in a fleet file.
type ValidationError struct {
	Problems []Problem
}

// maxProblemsShown keeps the message of a systematically broken
// million-instance file readable; Problems keeps them all.
const maxProblemsShown = 50

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fleet file refused, %d problem(s):", len(e.Problems))
	for i, p := range e.Problems {
		if i == maxProblemsShown {
			fmt.Fprintf(&b, "\n  ... and %d more", len(e.Problems)-maxProblemsShown)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// ParseFile reads and validates the fleet file at path.
func ParseFile(path string) (*Fleet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fleet file: %w", err)
	}
	defer f.Close()
	fl, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("fleet file %s: %w", path, err)
	}
	return fl, nil
}

// Parse reads and validates a fleet file. It returns a *SyntaxError for
// malformed JSON and a *ValidationError listing every content problem.
func Parse(r io.Reader) (*Fleet, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read fleet file: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &SyntaxError{Line: 1, Column: 1, Msg: "the fleet file is empty; want a JSON object with releases, tenants and instances"}
	}
	var doc fileDocument
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(data, err)
	}
	v := &validator{}
	fl := v.validate(doc)
	if len(v.problems) > 0 {
		return nil, &ValidationError{Problems: v.problems}
	}
	return fl, nil
}

// syntaxError locates a JSON decoding error in data.
func syntaxError(data []byte, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		line, col := lineAndColumn(data, syntax.Offset)
		return &SyntaxError{Line: line, Column: col, Msg: syntax.Error()}
	case errors.As(err, &typ):
		line, col := lineAndColumn(data, typ.Offset)
		field := typ.Field
		if field == "" {
			field = "the document"
		}
		return &SyntaxError{Line: line, Column: col, Msg: fmt.Sprintf("%s: got a JSON %s, want %s", field, typ.Value, typeName(typ))}
	}
	return fmt.Errorf("decode fleet file: %w", err)
}

// typeName says in JSON terms what a Go type accepts.
func typeName(typ *json.UnmarshalTypeError) string {
	t := typ.Type
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Slice:
		return "an array"
	case reflect.Struct:
		return "an object"
	}
	return typ.Type.String()
}

// lineAndColumn turns a byte offset into a 1-based line and column. The
// decoder's offset points just past the offending token, so it steps back
// one byte to land on it.
func lineAndColumn(data []byte, offset int64) (line, col int) {
	if offset > 0 {
		offset--
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// validator converts the document and collects every problem.
type validator struct {
	problems []Problem
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) validate(doc fileDocument) *Fleet {
	fl := &Fleet{}
	if len(doc.Releases) == 0 {
		v.add("releases", "at least one release is required")
	}
	versions := map[string]bool{}
	versionAt := map[string]int{}
	orderAt := map[int]int{}
	for i, fr := range doc.Releases {
		path := fmt.Sprintf("releases[%d]", i)
		rel := Release{Version: fr.Version, Name: fr.Name}
		if v.version(path+".version", fr.Version) {
			if j, dup := versionAt[fr.Version]; dup {
				v.add(path+".version", "%q is already the version of releases[%d]; versions must be unique", fr.Version, j)
			} else {
				versionAt[fr.Version] = i
			}
			versions[fr.Version] = true
		}
		if strings.TrimSpace(fr.Name) == "" {
			v.add(path+".name", "is required (the display name, e.g. \"Spring '27\")")
		}
		if fr.Order == nil {
			v.add(path+".order", "is required (the release's position in the version history; higher is newer)")
		} else {
			rel.Order = *fr.Order
			if j, dup := orderAt[rel.Order]; dup {
				v.add(path+".order", "%d is already the order of releases[%d]; orders must be unique", rel.Order, j)
			} else {
				orderAt[rel.Order] = i
			}
		}
		rel.PeriodStart = v.timestamp(path+".periodStart", fr.PeriodStart)
		rel.PeriodEnd = v.timestamp(path+".periodEnd", fr.PeriodEnd)
		switch {
		case (fr.PeriodStart == "") != (fr.PeriodEnd == ""):
			v.add(path, "periodStart and periodEnd go together: give both or neither")
		case fr.PeriodStart != "" && !rel.PeriodStart.IsZero() && !rel.PeriodEnd.IsZero() && !rel.PeriodEnd.After(rel.PeriodStart):
			v.add(path+".periodEnd", "%s is not after periodStart %s", rfc3339(rel.PeriodEnd), rfc3339(rel.PeriodStart))
		}
		if len(fr.Slots) > 0 && fr.PeriodStart == "" {
			v.add(path+".slots", "a release with slots needs periodStart and periodEnd")
		}
		slotAt := map[string]int{}
		for j, fs := range fr.Slots {
			rel.Slots = append(rel.Slots, v.slot(fmt.Sprintf("%s.slots[%d]", path, j), fs, rel, slotAt, j))
		}
		fl.Releases = append(fl.Releases, rel)
	}

	tenantAt := map[string]int{}
	for i, t := range doc.Tenants {
		path := fmt.Sprintf("tenants[%d]", i)
		if v.id(path+".id", "a tenant id", t.ID) {
			if j, dup := tenantAt[t.ID]; dup {
				v.add(path+".id", "%q is already the id of tenants[%d]; tenant ids must be unique", t.ID, j)
			} else {
				tenantAt[t.ID] = i
			}
		}
		if strings.TrimSpace(t.Name) == "" {
			v.add(path+".name", "is required")
		}
		fl.Tenants = append(fl.Tenants, t)
	}

	instanceAt := map[string]int{}
	for i, in := range doc.Instances {
		path := fmt.Sprintf("instances[%d]", i)
		if v.id(path+".id", "an instance id", in.ID) {
			if j, dup := instanceAt[in.ID]; dup {
				v.add(path+".id", "%q is already the id of instances[%d]; instance ids must be unique", in.ID, j)
			} else {
				instanceAt[in.ID] = i
			}
		}
		if _, ok := tenantAt[in.Tenant]; !ok {
			v.add(path+".tenant", "%q is not the id of a tenant in this file", in.Tenant)
		}
		if strings.TrimSpace(in.Name) == "" {
			v.add(path+".name", "is required")
		}
		if in.Kind != KindProduction && in.Kind != KindSandbox {
			v.add(path+".kind", "%q is not an instance kind; want %q or %q", in.Kind, KindProduction, KindSandbox)
		}
		if in.Region == "" {
			v.add(path+".region", "is required (slots are offered per region)")
		} else {
			v.id(path+".region", "a region", in.Region)
		}
		if in.TimeZone == "" || in.TimeZone == "Local" {
			v.add(path+".timeZone", "%q is not an IANA time zone (e.g. Europe/Berlin)", in.TimeZone)
		} else if _, err := time.LoadLocation(in.TimeZone); err != nil {
			v.add(path+".timeZone", "%q is not an IANA time zone (e.g. Europe/Berlin)", in.TimeZone)
		}
		if !versions[in.Version] {
			v.add(path+".version", "%q is not the version of a release in this file", in.Version)
		}
		if len(in.Admins) == 0 {
			v.add(path+".admins", "at least one admin is required (admins approve and reschedule updates)")
		}
		in.Admins = v.emails(path+".admins", in.Admins)
		in.Users = v.emails(path+".users", in.Users)
		in.ExtraRecipients = v.emails(path+".extraRecipients", in.ExtraRecipients)
		fl.Instances = append(fl.Instances, in)
	}
	return fl
}

// slot converts and checks one slot of rel.
func (v *validator) slot(path string, fs fileSlot, rel Release, seen map[string]int, index int) Slot {
	s := Slot{Region: fs.Region, Start: v.timestamp(path+".start", fs.Start), Window: Duration(workflows.DefaultWindowLength)}
	v.id(path+".region", "a region", fs.Region)
	if fs.Start == "" {
		v.add(path+".start", "is required (an RFC 3339 time such as 2027-03-06T22:00:00Z)")
	}
	if fs.Window != "" {
		d, err := duration.Parse(fs.Window)
		switch {
		case err != nil:
			v.add(path+".window", "%v", err)
		case d <= 0:
			v.add(path+".window", "%q is not a positive duration", fs.Window)
		default:
			s.Window = Duration(d)
		}
	}
	if fs.Capacity == nil {
		v.add(path+".capacity", "is required (how many instances may update in this window; 0 withdraws the slot)")
	} else if *fs.Capacity < 0 {
		v.add(path+".capacity", "%d is negative; want 0 or more", *fs.Capacity)
	} else {
		s.Capacity = *fs.Capacity
	}
	if !s.Start.IsZero() {
		key := s.Region + "\x00" + s.Start.String()
		if j, dup := seen[key]; dup {
			v.add(path, "region %q at %s is already offered by slots[%d]", s.Region, rfc3339(s.Start), j)
		} else {
			seen[key] = index
		}
		if !rel.PeriodStart.IsZero() && !rel.PeriodEnd.IsZero() &&
			(s.Start.Before(rel.PeriodStart) || s.End().After(rel.PeriodEnd)) {
			v.add(path, "window %s to %s is not inside the release period %s to %s",
				rfc3339(s.Start), rfc3339(s.End()), rfc3339(rel.PeriodStart), rfc3339(rel.PeriodEnd))
		}
	}
	return s
}

// timestamp parses an RFC 3339 time; empty gives the zero time.
func (v *validator) timestamp(path, s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		v.add(path, "%q is not an RFC 3339 time (e.g. 2027-03-06T22:00:00Z)", s)
		return time.Time{}
	}
	return t.UTC()
}

// emails checks bare addresses and rejects case-insensitive repeats.
func (v *validator) emails(path string, list []string) []string {
	seen := map[string]int{}
	for i, e := range list {
		at := fmt.Sprintf("%s[%d]", path, i)
		addr, err := mail.ParseAddress(e)
		if err != nil || addr.Name != "" || addr.Address != e {
			v.add(at, "%q is not an email address (want a bare address such as admin@example.com)", e)
			continue
		}
		key := strings.ToLower(e)
		if j, dup := seen[key]; dup {
			v.add(at, "%q repeats %s[%d]", e, path, j)
			continue
		}
		seen[key] = i
	}
	return list
}

// rfc3339 renders a time in messages.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
