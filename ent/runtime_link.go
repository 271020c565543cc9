package ent

// The schemas declare hooks, so ent generates their defaults and hooks in the
// ent/runtime package. Importing it here means every user of the client gets
// cuid IDs, timestamps and UTC normalisation without a blank import of their own.
import _ "github.com/klozd/api/ent/runtime"
