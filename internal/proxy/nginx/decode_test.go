package nginx

import "testing"

func TestDecodePath(t *testing.T) {
	for in, want := range map[string]string{
		"/plain":         "/plain",
		"/a%7Eb":         "/a~b",
		"/%41%62/%c3%a9": "/Ab/\u00e9",
		"/a+b":           "/a+b", // a path keeps '+': it is not a query
	} {
		if got := decode(in); got != want {
			t.Errorf("decode(%q) = %q, want %q", in, got, want)
		}
	}
}
