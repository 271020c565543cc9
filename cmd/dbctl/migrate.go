package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klozd/api/internal/migration"
)

func migrateCommands() []command {
	return []command{
		{"new", "write the next migration from ent schema changes (like prisma migrate dev --name)", runMigrateNew},
		{"apply", "apply pending migrations, adopting a Prisma-migrated database (like prisma migrate deploy)", runMigrateApply},
		{"status", "applied, pending, failed and unknown versions (like prisma migrate status)", runMigrateStatus},
		{"lint", "analyze the latest files for destructive and risky changes (atlas migrate lint)", runMigrateLint},
		{"reset", "development only: drop the schema and apply all migrations (like prisma migrate reset)", runMigrateReset},
		{"hash", "rewrite atlas.sum after editing a migration file by hand", runMigrateHash},
		{"validate", "check atlas.sum against the migration files", runMigrateValidate},
	}
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		usage(stderr, "dbctl migrate", migrateCommands())
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range migrateCommands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "dbctl migrate: unknown command %q (see dbctl migrate -h)\n", args[0])
	return exitUsage
}

func runMigrateNew(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "dbctl migrate new"
	fs := newFlags(name,
		"Diffs the ent schema (ent/schema) against the state the migration directory builds, on a dev\n"+
			"database, and writes the difference as the next migration file and updates atlas.sum.\n"+
			"With no change it writes nothing and says so. Give the flags, then NAME, the file's\n"+
			"description (such as add_user_index).",
		"dbctl migrate new add_user_index", stderr)
	devURL := devURLFlag(fs)
	dirPath := dirFlag(fs)
	version := fs.String("version", "", "version of the new file (default: now, UTC, YYYYMMDDHHMMSS)")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, name+": give exactly one NAME, such as add_user_index (see dbctl migrate new -h)")
		return exitUsage
	}
	dir, err := openDir(*dirPath)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	dev, err := devServer(ctx, *devURL)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer dev.Close()
	scratch, drop, err := dev.Create(ctx, "dbctl_dev")
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer drop()
	file, err := migration.Generate(ctx, dir, migration.GenerateOptions{Name: fs.Arg(0), Version: *version, DevURL: scratch})
	switch {
	case errors.Is(err, migration.ErrNoChanges):
		fmt.Fprintln(stdout, "no schema changes: the migration directory already matches the ent schema; nothing written")
		return exitOK
	case err != nil:
		return failErr(stderr, name, err)
	}
	fmt.Fprintf(stdout, "wrote %s/%s and updated atlas.sum\n", *dirPath, file)
	return exitOK
}

func runMigrateHash(_ context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "dbctl migrate hash"
	fs := newFlags(name, "Rewrites atlas.sum from the migration files (atlas migrate hash).",
		"dbctl migrate hash", stderr)
	dirPath := dirFlag(fs)
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	dir, err := openDir(*dirPath)
	if err == nil {
		err = migration.Hash(dir)
	}
	if err != nil {
		return usageErr(stderr, name, err)
	}
	fmt.Fprintf(stdout, "wrote %s/atlas.sum\n", *dirPath)
	return exitOK
}

func runMigrateValidate(_ context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "dbctl migrate validate"
	fs := newFlags(name, "Checks atlas.sum against the migration files (atlas migrate validate).",
		"dbctl migrate validate", stderr)
	dirPath := dirFlag(fs)
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	dir, err := openDir(*dirPath)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	if err := migration.Validate(dir); err != nil {
		return failErr(stderr, name, err)
	}
	fmt.Fprintln(stdout, "atlas.sum matches the migration files")
	return exitOK
}
