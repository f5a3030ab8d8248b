package config

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"text/tabwriter"
	"time"
)

// Variable describes one environment variable of Config.
type Variable struct {
	Name        string
	Default     string
	Description string
	// Secret variables are never printed, logged or shown with a value.
	Secret bool
}

// Variables lists every environment variable in declaration order, with the
// default it takes when unset, for -h and for the checks that keep
// docker-compose.yml and the README in step with the code.
func Variables() []Variable {
	presets := reflect.ValueOf(defaults())
	t := presets.Type()
	var vars []Variable
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" {
			continue
		}
		def, ok := f.Tag.Lookup("default")
		if !ok {
			def = formatValue(presets.Field(i).Interface())
		}
		vars = append(vars, Variable{
			Name:        name,
			Default:     def,
			Description: f.Tag.Get("desc"),
			Secret:      f.Tag.Get("secret") == "true",
		})
	}
	return slices.Concat(vars, clientVariables, telemetryVariables)
}

func formatValue(v any) string {
	switch v := v.(type) {
	case time.Duration:
		if v == 0 {
			return ""
		}
		return FormatDuration(v)
	case []time.Duration:
		return formatDurations(v)
	case SimulatedFailures:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}

// PrintUsage writes the -h text of program: every variable with its default
// and description.
func PrintUsage(w io.Writer, program string) error {
	fmt.Fprintf(w, "Usage of %s: configured by environment variables only.\n\n", program)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tDESCRIPTION")
	for _, v := range Variables() {
		def := v.Default
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, def, v.Description)
	}
	return tw.Flush()
}
