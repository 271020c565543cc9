// Package migration reads, writes, validates and applies the versioned
// migration directory in Atlas's format (flat <version>_<name>.sql files and
// atlas.sum), recording applied files in the revisions table the Atlas CLI
// uses, so the CLI and dbctl can take turns on one database.
package migration

import (
	"errors"
	"fmt"
	"io/fs"
	"path"

	"ariga.io/atlas/sql/migrate"

	"github.com/klozd/api/migrations"
)

// Embedded returns the migration directory compiled into the binary.
func Embedded() (migrate.Dir, error) {
	return FromFS(migrations.FS)
}

// FromFS copies the .sql files and atlas.sum at the root of fsys into an
// in-memory [migrate.Dir].
func FromFS(fsys fs.FS) (migrate.Dir, error) {
	dir := &migrate.MemDir{} // not registered by name: nothing to close
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("migration: read directory: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || (path.Ext(e.Name()) != ".sql" && e.Name() != migrate.HashFileName) {
			continue
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("migration: read %s: %w", e.Name(), err)
		}
		if err := dir.WriteFile(e.Name(), b); err != nil {
			return nil, fmt.Errorf("migration: %w", err)
		}
	}
	return dir, nil
}

// CopyUpTo copies the files of dir with versions up to and including
// version (all files when version is "") into a new in-memory directory,
// with atlas.sum written for them. It fails when version names no file.
func CopyUpTo(dir migrate.Dir, version string) (*migrate.MemDir, error) {
	files, err := dir.Files()
	if err != nil {
		return nil, fmt.Errorf("migration: list files: %w", err)
	}
	mem := &migrate.MemDir{}
	found := version == ""
	for _, f := range files {
		if version != "" && f.Version() > version {
			break
		}
		found = found || f.Version() == version
		if err := mem.WriteFile(f.Name(), f.Bytes()); err != nil {
			return nil, fmt.Errorf("migration: copy %s: %w", f.Name(), err)
		}
	}
	if !found {
		return nil, fmt.Errorf("migration: version %s is not a file of the migration directory", version)
	}
	if err := Hash(mem); err != nil {
		return nil, err
	}
	return mem, nil
}

// Validate checks that atlas.sum matches the files of dir, as
// "atlas migrate validate" does, and names the file that does not.
func Validate(dir migrate.Dir) error {
	err := migrate.Validate(dir)
	var ce *migrate.ChecksumError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return fmt.Errorf("migration: checksum mismatch: %s was %s after atlas.sum was written: run 'dbctl migrate hash' if the edit is intended: %w",
			ce.File, ce.Reason, err)
	case errors.Is(err, migrate.ErrChecksumNotFound):
		return fmt.Errorf("migration: atlas.sum is missing: run 'dbctl migrate hash': %w", err)
	default:
		return fmt.Errorf("migration: validate directory: %w", err)
	}
}

// Hash rewrites atlas.sum from the files of dir, as "atlas migrate hash" does.
func Hash(dir migrate.Dir) error {
	sum, err := dir.Checksum()
	if err != nil {
		return fmt.Errorf("migration: hash: %w", err)
	}
	if err := migrate.WriteSumFile(dir, sum); err != nil {
		return fmt.Errorf("migration: write atlas.sum: %w", err)
	}
	return nil
}
