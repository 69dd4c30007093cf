package logrow

import "testing"

func TestIdentityCheck(t *testing.T) {
	for _, c := range []struct {
		id   Identity
		want Status
	}{
		{Identity{0, 0, 0}, Blank},
		{Identity{0, 0, 3}, Foreign}, // someone's tables, unmarked
		{Identity{0, 2, 0}, Blank},   // user_version alone changes nothing: still empty
		{Identity{42, 0, 0}, Foreign},
		{Identity{ApplicationID, 0, 0}, Unmigrated},
		{Identity{ApplicationID, 1, 5}, Current},
		{Identity{ApplicationID, SchemaVersion, 20}, Current},
		{Identity{ApplicationID, SchemaVersion + 1, 20}, Newer},
	} {
		if got := c.id.Check(); got != c.want {
			t.Errorf("%+v: %v, want %v", c.id, got, c.want)
		}
	}
}
