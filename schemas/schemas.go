// Package schemas embeds the numbered SQL migrations applied by goose.
package schemas

import "embed"

// FS holds every migration, named NNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
