package docker

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// Swarm tasks have no events: a service event says the spec changed, not
// that a task started, moved or stopped. So tasks are polled: every
// TaskPoll normally, and every burstPoll for burstFor after anything that
// suggests tasks are changing (a service event, a task container's event).
const (
	burstPoll = 100 * time.Millisecond
	burstFor  = 15 * time.Second
)

// swarmState is what the source knows of a Swarm manager.
type swarmState struct {
	// specs are the services without tasks; services the same with the
	// tasks of the last poll.
	specs    map[string]Service
	services map[string]Service
	nodes    map[string]string // node ID -> host name
	networks map[string]string // network ID -> name
	// drainingTasks are tasks whose container got a terminating signal:
	// out of the table before the orchestrator reports them stopped.
	drainingTasks map[string]bool
}

func newSwarmState() *swarmState {
	return &swarmState{specs: map[string]Service{}, services: map[string]Service{}, nodes: map[string]string{},
		networks: map[string]string{}, drainingTasks: map[string]bool{}}
}

// isManager reports whether the engine is an active Swarm manager, the only
// kind of node that can list services.
func isManager(ctx context.Context, cli *client.Client) (bool, error) {
	res, err := cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return false, fmt.Errorf("info: %w", err)
	}
	sw := res.Info.Swarm
	return sw.LocalNodeState == swarm.LocalNodeStateActive && sw.ControlAvailable, nil
}

// listAll lists nodes, networks, services and tasks. It reports whether
// anything routable changed.
func (ss *swarmState) listAll(ctx context.Context, cli *client.Client) (bool, error) {
	nodes, err := cli.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return false, fmt.Errorf("list swarm nodes: %w", err)
	}
	ss.nodes = make(map[string]string, len(nodes.Items))
	for _, n := range nodes.Items {
		ss.nodes[n.ID] = n.Description.Hostname
	}
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return false, fmt.Errorf("list networks: %w", err)
	}
	ss.networks = make(map[string]string, len(nets.Items))
	for _, n := range nets.Items {
		ss.networks[n.ID] = n.Name
	}
	svcs, err := cli.ServiceList(ctx, client.ServiceListOptions{})
	if err != nil {
		return false, fmt.Errorf("list swarm services: %w", err)
	}
	ss.specs = make(map[string]Service, len(svcs.Items))
	for _, s := range svcs.Items {
		ss.specs[s.ID] = projectService(s)
	}
	return ss.pollTasks(ctx, cli)
}

// pollTasks lists the tasks and joins them to the known services. It
// reports whether anything routable changed.
func (ss *swarmState) pollTasks(ctx context.Context, cli *client.Client) (bool, error) {
	tasks, err := cli.TaskList(ctx, client.TaskListOptions{})
	if err != nil {
		return false, fmt.Errorf("list swarm tasks: %w", err)
	}
	next := maps.Clone(ss.specs)
	live := map[string]bool{}
	for _, t := range tasks.Items {
		svc, ok := next[t.ServiceID]
		if !ok || t.Status.State != swarm.TaskStateRunning {
			continue
		}
		for _, na := range t.NetworksAttachments {
			if na.Network.ID != "" && na.Network.Spec.Name != "" {
				ss.networks[na.Network.ID] = na.Network.Spec.Name
			}
		}
		svc.Tasks = append(svc.Tasks, ss.projectTask(t))
		live[t.ID] = true
		next[t.ServiceID] = svc
	}
	for id, svc := range next {
		slices.SortFunc(svc.Tasks, func(a, b Task) int { return cmp.Compare(a.ID, b.ID) })
		next[id] = resolveNetworks(svc, ss.networks)
	}
	for id := range ss.drainingTasks {
		if !live[id] {
			delete(ss.drainingTasks, id)
		}
	}
	changed := !reflect.DeepEqual(next, ss.services)
	ss.services = next
	return changed, nil
}

func projectService(s swarm.Service) Service {
	svc := Service{ID: s.ID, Name: s.Spec.Name, Created: s.CreatedAt.UTC(), Labels: s.Spec.Labels}
	for _, p := range s.Endpoint.Ports {
		svc.Ports = append(svc.Ports, ServicePort{
			Target: uint16(p.TargetPort), Published: uint16(p.PublishedPort),
			Proto: string(p.Protocol), Mode: string(p.PublishMode),
		})
	}
	slices.SortFunc(svc.Ports, func(a, b ServicePort) int {
		return cmp.Or(cmp.Compare(a.Target, b.Target), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Published, b.Published))
	})
	// VIPs name networks by ID; the task template's attachments do too.
	// Names come from the tasks (see attach), so keep IDs until then.
	svc.VIPs = map[string]string{}
	for _, v := range s.Endpoint.VirtualIPs {
		if v.Addr.IsValid() {
			svc.VIPs["id:"+v.NetworkID] = v.Addr.Addr().String()
		}
	}
	return svc
}

func (ss *swarmState) projectTask(t swarm.Task) Task {
	task := Task{
		ID: t.ID, Slot: t.Slot, Node: ss.nodes[t.NodeID],
		State: string(t.Status.State), DesiredState: string(t.DesiredState),
		Draining: ss.drainingTasks[t.ID],
	}
	if cs := t.Status.ContainerStatus; cs != nil {
		task.ContainerID = cs.ContainerID
	}
	for _, na := range t.NetworksAttachments {
		if len(na.Addresses) == 0 || na.Network.Spec.Name == "" {
			continue
		}
		if task.Networks == nil {
			task.Networks = map[string]string{}
		}
		task.Networks[na.Network.Spec.Name] = na.Addresses[0].Addr().String()
	}
	return task
}

// resolveNetworks turns network IDs into names in a service, using the names
// its tasks' attachments carry, and fills Service.Networks.
func resolveNetworks(svc Service, names map[string]string) Service {
	vips := make(map[string]string, len(svc.VIPs))
	for key, ip := range svc.VIPs {
		if name, ok := names[key[len("id:"):]]; ok {
			vips[name] = ip
		}
	}
	svc.VIPs = vips
	set := map[string]bool{}
	for _, t := range svc.Tasks {
		for n := range t.Networks {
			set[n] = true
		}
	}
	for n := range vips {
		set[n] = true
	}
	svc.Networks = slices.Sorted(maps.Keys(set))
	return svc
}

// drainTask marks the task of a container that is being stopped.
func (ss *swarmState) drainTask(taskID string) bool {
	if ss.drainingTasks[taskID] {
		return false
	}
	ss.drainingTasks[taskID] = true
	for id, svc := range ss.services {
		for i := range svc.Tasks {
			if svc.Tasks[i].ID == taskID {
				svc.Tasks[i].Draining = true
				ss.services[id] = svc
				return true
			}
		}
	}
	return false
}

// snapshotServices returns the services sorted by ID.
func (ss *swarmState) snapshotServices() []Service {
	out := make([]Service, 0, len(ss.services))
	for _, svc := range ss.services {
		svc.Tasks = slices.Clone(svc.Tasks)
		out = append(out, svc)
	}
	slices.SortFunc(out, func(a, b Service) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
