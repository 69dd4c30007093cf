package logrow

import "time"

// The marks plugin/querylog puts on its files, and the newest schema: the one the plugin
// writes and the querylog command reads.
const (
	// ApplicationID is PRAGMA application_id of a querylog database ("QLOG"); any other
	// non-empty SQLite file is someone else's.
	ApplicationID = 0x514C4F47
	// SchemaVersion is PRAGMA user_version of the newest schema (plugin/querylog/schema.go).
	SchemaVersion = 6
)

// IdentityQuery reads what Identity holds, in that order.
const IdentityQuery = `SELECT (SELECT application_id FROM pragma_application_id),
		(SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_schema)`

// Identity is what a SQLite file says it is: its application id, its schema version and how
// many schema objects it holds.
type Identity struct {
	AppID, Version, Objects int64
}

// Status is what an Identity makes of a file.
type Status int

const (
	Current    Status = iota // a querylog database of a schema this build knows
	Blank                    // no application id and nothing in it: free to become one
	Foreign                  // another application's file, or not empty and unmarked
	Newer                    // a querylog database of a schema newer than SchemaVersion
	Unmigrated               // marked as querylog's, without a schema yet
)

// Check tells what the file is; the writer and the readers each say what that means for them.
func (id Identity) Check() Status {
	switch {
	case id.AppID == 0 && id.Objects == 0:
		return Blank
	case id.AppID != ApplicationID:
		return Foreign
	case id.Version > SchemaVersion:
		return Newer
	case id.Version < 1:
		return Unmigrated
	}
	return Current
}

// FirstsHorizon is schema 6's horizon of first sightings (plugin/querylog/firsts.go): the writer
// lists a row holding a name as text unless the file knew the name this long before the row,
// so a window up to this long has every text row of its new names listed. querylog new reads
// windows of an hour and a minute's slack from the list.
const FirstsHorizon = 75 * time.Minute
