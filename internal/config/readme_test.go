package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestReadme keeps the settings table in README.md in step with the code:
// one row per setting with its flag, TOML key, variable and default.
func TestReadme(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	def := Default()
	rows := []string{fmt.Sprintf("| `--%s` | (none) | `%s` | none |", flagConfig, envConfig)}
	for _, s := range settings {
		d := "none"
		if v := plain(s, &def); v != "" {
			d = "`" + v + "`"
		}
		rows = append(rows, fmt.Sprintf("| `--%s` | `%s` | `%s` | %s |", s.flag, s.key(), s.env(), d))
	}
	for _, row := range rows {
		t.Run(strings.Fields(row)[1], func(t *testing.T) {
			if !strings.Contains(readme, "\n"+row+" ") {
				t.Errorf("README.md has no row starting %s", row)
			}
		})
	}
	if got, want := strings.Count(readme, "\n| `--"), len(rows); got != want {
		t.Errorf("README.md has %d setting rows, want %d", got, want)
	}
}
