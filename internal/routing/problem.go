package routing

import "fmt"

// Problem explains why an object (a container or a service) was left out of
// the table. It is shown in the log, the API, the dashboard and a metric.
type Problem struct {
	// Kind is "container" or "service".
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Name string `json:"name"`
	// Label is the label at fault, when one is.
	Label string `json:"label,omitempty"`
	// Reason is a short machine-friendly class, for metrics:
	// "invalid_label", "conflict", "no_port", "no_network".
	Reason string `json:"reason"`
	// Message says what is wrong and how to fix it.
	Message string `json:"message"`
}

// Problem reasons.
const (
	ReasonInvalidLabel = "invalid_label"
	ReasonConflict     = "conflict"
	ReasonNoPort       = "no_port"
	ReasonNoNetwork    = "no_network"
)

func (p Problem) Error() string {
	if p.Label != "" {
		return fmt.Sprintf("%s %s: label %s: %s", p.Kind, p.Name, p.Label, p.Message)
	}
	return fmt.Sprintf("%s %s: %s", p.Kind, p.Name, p.Message)
}
