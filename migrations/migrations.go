// Package migrations embeds the versioned migration directory: the Atlas
// migration files written by "dbctl migrate new" from the ent schema, and
// their atlas.sum. The Atlas CLI reads the same directory (file://migrations).
package migrations

import "embed"

// FS holds the migration files and atlas.sum (and this file, which readers skip).
//
//go:embed *
var FS embed.FS
