// Package dnsname matches domain names in presentation format (as miekg/dns writes them, and
// as the log stores them) on label boundaries. It decides as CoreDNS's plugin.Zones.Matches
// (dns.IsSubDomain), which the plugin's ignore option uses, without splitting the names into
// labels: the querylog command matches every row it reads with it.
package dnsname

// InZone reports whether name is zone or a name under it. Both are fully qualified and in the
// same case (the log stores names lower-cased). A dot escaped by a backslash, as in
// evil\.example.org. (a name directly under org.), is part of a label, not a boundary.
func InZone(name, zone string) bool {
	if zone == "." {
		return true
	}
	if len(name) < len(zone) || name[len(name)-len(zone):] != zone {
		return false
	}
	if len(name) == len(zone) {
		return true
	}
	return EndsLabel(name, len(name)-len(zone)-1)
}

// EndsLabel reports whether name[i] is a dot that ends a label. In presentation format a
// backslash always begins an escape, so a dot ends a label unless an odd number of
// backslashes runs up to it (\. escaped; \\. a backslash, then the boundary).
func EndsLabel(name string, i int) bool {
	if i < 0 || i >= len(name) || name[i] != '.' {
		return false
	}
	slashes := 0
	for j := i - 1; j >= 0 && name[j] == '\\'; j-- {
		slashes++
	}
	return slashes%2 == 0
}

// Parent returns name without its first label (example.org. for www.example.org.), or "" for a
// name of one label. A dot escaped by a backslash is part of a label: the parent of
// evil\.example.org. is org.
func Parent(name string) string {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++ // the escaped character: a dot there ends no label (\DDD holds no dot)
		case '.':
			return name[i+1:]
		}
	}
	return ""
}
