// Atlas CLI configuration. dbctl (go run ./cmd/dbctl) does the same work on
// the Atlas Go library and needs no download; the two are interchangeable:
// both read migrations/ and atlas.sum and record applied files in
// atlas_schema_revisions.atlas_schema_revisions.
//
//   atlas migrate apply    --env local    # = dbctl migrate apply
//   atlas migrate status   --env local    # = dbctl migrate status
//   atlas migrate validate --env local    # = dbctl migrate validate
//   atlas migrate lint     --env local --latest 1
//   atlas migrate hash     --env local    # = dbctl migrate hash
//
// ATLAS_DEV_URL is the Atlas CLI's dev database: an empty database Atlas
// may use and wipe, for example "docker://postgres/15/dev?search_path=public"
// where Docker runs. It is not DEV_DATABASE_URL, dbctl's --dev-url, which
// names a server (its maintenance database "postgres" will do) on which
// dbctl creates and drops scratch databases of its own and wipes nothing.

env "local" {
  // The database to migrate.
  url = getenv("DATABASE_URL")
  // A scratch database for replaying and diffing migrations.
  dev = getenv("ATLAS_DEV_URL")
  migration {
    dir = "file://migrations"
  }
  // Prisma's bookkeeping table is not part of the schema.
  exclude = ["_prisma_migrations"]
}

// The official Atlas build can read the ent schema directly (the community
// build cannot; use "dbctl migrate new NAME" there):
//
//   atlas migrate diff NAME --env ent
env "ent" {
  src = "ent://ent/schema"
  url = getenv("DATABASE_URL")
  dev = getenv("ATLAS_DEV_URL")
  migration {
    dir = "file://migrations"
  }
  exclude = ["_prisma_migrations"]
}
