package testenv

// NodeSocket is the path of a node's engine socket inside the node (where
// a stack's bind mount of the socket must point).
const NodeSocket = "/sock/docker.sock"

// NodeSocketGID is the group that owns NodeSocket: what a container of the
// Interlock image (which runs as nobody) needs to read the node's engine.
func NodeSocketGID() (int, error) { return dockerSocketGID() }
