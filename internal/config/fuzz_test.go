package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the file parser. It must never panic;
// errors are fine, but must say something. A document it accepts must
// validate, log, and read back the same after being written out again.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*", "*.toml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`resync_interval = "9223372036854775807ns"`))
	f.Add([]byte("proxy = \"nginx\"\x00"))
	f.Add([]byte(`a.b.c = [1, {x = 2}]`))

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parse("fuzz.toml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			if c != (Config{}) {
				t.Fatalf("config %v returned with error %v", c, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v\n%s", err, data)
		}
		_ = c.String()
		again, err := parse("fuzz.toml", encodeTOML(t, c))
		if err != nil {
			t.Fatalf("re-encoded config does not parse: %v\n%s", err, encodeTOML(t, c))
		}
		if again != c {
			t.Fatalf("round trip:\n%v\nwant\n%v", again, c)
		}
	})
}
