package fleet

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/invopop/jsonschema"
	schemacheck "github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaPath is the published JSON Schema of the fleet file, which the
// README points editors at.
const schemaPath = "../../schemas/fleet.schema.json"

var update = flag.Bool("update", false, "rewrite "+schemaPath+" from the Go types")

// generateSchema reflects the file as written (fileDocument): the types
// and their jsonschema tags are the one source of the schema.
func generateSchema(t *testing.T) []byte {
	t.Helper()
	r := jsonschema.Reflector{
		DoNotReference:             true,
		AllowAdditionalProperties:  true, // the loader ignores other fields
		RequiredFromJSONSchemaTags: true,
	}
	schema := r.Reflect(&fileDocument{})
	schema.ID = "https://github.com/svcupdate/svcupdate/schemas/fleet.schema.json"
	schema.Title = "svcupdate fleet file"
	schema.Description = "Releases with their slots, tenants, and instances with their recipients (starter load FILE)."
	out, err := json.MarshalIndent(schema, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func TestSchemaIsGeneratedFromTheTypes(t *testing.T) {
	got := generateSchema(t)
	if *update {
		if err := os.WriteFile(schemaPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of step with the fleet types: go test ./internal/fleet -run TestSchema -update rewrites it", schemaPath)
	}
}

// The schema accepts what the loader accepts and catches what an editor
// should flag.
func TestSchemaValidatesFleetFiles(t *testing.T) {
	c := schemacheck.NewCompiler()
	schema, err := c.Compile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"testdata/valid.json":         true,
		"testdata/many_problems.json": false,
	} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := schemacheck.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		err = schema.Validate(doc)
		if (err == nil) != want {
			t.Errorf("%s: valid by the schema = %v, want %v (%v)", name, err == nil, want, err)
		}
	}
	bad := `{"releases": [{"version": "9.2.0", "name": "x", "order": 1,
		"slots": [{"region": "emea", "start": "2027-03-06T02:00:00Z", "window": "12 hours", "capacity": -1}]}],
		"instances": [{"id": "a", "tenant": "t", "name": "A", "kind": "prod", "region": "emea", "timeZone": "UTC", "version": "9.2.0", "admins": []}]}`
	doc, err := schemacheck.UnmarshalJSON(strings.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = schema.Validate(doc)
	if err == nil {
		t.Fatal("the schema accepts a bad window, a negative capacity, an unknown kind and no admins")
	}
	for _, field := range []string{"window", "capacity", "kind", "admins"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("the schema's complaint does not name %s:\n%v", field, err)
		}
	}
}
