package kafka

import "strings"

// Cluster says where a process's Kafka traffic goes: the brokers, and a namespace put in front of
// every topic and consumer-group name. Several Boxoffice installations — a staging copy, or each
// end-to-end test — can then share one Kafka cluster without reading each other's events. Code
// outside this package names topics and groups as the event contract does ("movie-found",
// "booking"); only this package sees the namespaced names.
type Cluster struct {
	Brokers   []string
	Namespace string // empty: the names as they are
}

// Topic is the name a topic of the contract has on this cluster.
func (c Cluster) Topic(name string) string {
	if c.Namespace == "" {
		return name
	}
	return c.Namespace + "." + name
}

// Group is the name a consumer group has on this cluster.
func (c Cluster) Group(id string) string { return c.Topic(id) }

// topics maps a list of contract names.
func (c Cluster) topics(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = c.Topic(n)
	}
	return out
}

// Unqualified turns a cluster topic name back into the contract's name.
func (c Cluster) Unqualified(topic string) string {
	if c.Namespace == "" {
		return topic
	}
	return strings.TrimPrefix(topic, c.Namespace+".")
}
