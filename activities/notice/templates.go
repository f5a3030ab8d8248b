package notice

import (
	"embed"
	"fmt"
	htmltemplate "html/template"
	texttemplate "text/template"
)

// templateFS holds one layout per format (HTML, plain text) and, per row
// of the communications table, templates/<spec.Template>.{html,txt}.tmpl.
// The text file defines "subject" and "content" for email kinds and "alert"
// for kinds with an in-product alert; the HTML file defines "content".
//
//go:embed templates/*.tmpl
var templateFS embed.FS

// templateSet is the parsed layout plus one kind's content.
type templateSet struct {
	HTML *htmltemplate.Template // nil for kinds without email
	Text *texttemplate.Template
}

// templates maps spec.Template to its parsed set. Parsed once at start-up:
// a broken template is a programming error that every test run catches,
// not something a running worker can recover from.
var templates = mustParseTemplates()

func mustParseTemplates() map[string]templateSet {
	htmlLayout := htmltemplate.Must(htmltemplate.ParseFS(templateFS, "templates/layout.html.tmpl"))
	textLayout := texttemplate.Must(texttemplate.ParseFS(templateFS, "templates/layout.txt.tmpl"))
	rows := []Spec{reminderSpec}
	for _, spec := range specs {
		rows = append(rows, spec)
	}
	sets := make(map[string]templateSet, len(rows))
	for _, spec := range rows {
		var set templateSet
		set.Text = texttemplate.Must(texttemplate.Must(textLayout.Clone()).ParseFS(templateFS, "templates/"+spec.Template+".txt.tmpl"))
		required := []string{}
		if spec.Email {
			set.HTML = htmltemplate.Must(htmltemplate.Must(htmlLayout.Clone()).ParseFS(templateFS, "templates/"+spec.Template+".html.tmpl"))
			if set.HTML.Lookup("content") == nil {
				panic(fmt.Sprintf("templates/%s.html.tmpl must define \"content\"", spec.Template))
			}
			required = append(required, "subject", "content")
		}
		if spec.Alert != alertNever {
			required = append(required, "alert")
		}
		for _, name := range required {
			if set.Text.Lookup(name) == nil {
				panic(fmt.Sprintf("templates/%s.txt.tmpl must define %q", spec.Template, name))
			}
		}
		sets[spec.Template] = set
	}
	return sets
}
