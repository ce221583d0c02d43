package eventstore

import (
	"flag"
	"strings"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
)

// RegisterFlags binds the collections and the schema to fs. Every command
// takes them, so each reads the same collections the same way.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Events, "events-collection", DefaultEvents, "collection of event documents (a collection name: not empty, no '$', not system.*, at most 120 bytes)")
	fs.StringVar(&o.Errors, "errors-collection", DefaultErrors, "collection of archived events (a collection name, not the events collection)")
	fs.StringVar(&o.Checkpoints, "checkpoints-collection", DefaultCheckpoints, "collection of the producer's resume token (a collection name, not the events or errors collection)")
	fs.StringVar(&o.Flow, "flow-collection", DefaultFlow, "collection of flow control's documents: breakers, pauses, rate limits, key slots (a collection name, not one of the above)")
	fs.StringVar(&o.Schema.AttemptsField, "attempts-field", "attempts", "the field counting an event's failed executions (a plain field name: letters, digits and '_', not starting with a digit, not one of retrigger's fields)")
	fs.StringVar(&o.Schema.DefaultType, "default-type", "", "the handler of documents without a type (an event type; empty: such documents go to errors)")
	fs.IntVar(&o.History, "history", DefaultHistory, "attempts kept in an event's history (negative: none; 0: 20)")
}

// Validate reports the first option to fix.
func (o Options) Validate() error {
	o = o.WithDefaults()
	f := func(field, flag, format string, args ...any) error {
		return config.Field("eventstore.Options."+field, flag, format, args...)
	}
	for _, c := range []struct{ field, flag, name string }{
		{"Events", "events-collection", o.Events}, {"Errors", "errors-collection", o.Errors}, {"Checkpoints", "checkpoints-collection", o.Checkpoints},
		{"Flow", "flow-collection", o.Flow},
	} {
		if strings.TrimSpace(c.name) == "" || strings.ContainsAny(c.name, "$\x00") || strings.HasPrefix(c.name, "system.") || len(c.name) > 120 {
			return f(c.field, c.flag, "%q is not a collection name (non-empty, no '$', not system.*)", c.name)
		}
	}
	switch {
	case o.Events == o.Errors:
		return f("Errors", "errors-collection", "must differ from the events collection %q", o.Events)
	case o.Checkpoints == o.Events || o.Checkpoints == o.Errors:
		return f("Checkpoints", "checkpoints-collection", "must differ from the events and errors collections")
	case o.Flow == o.Events || o.Flow == o.Errors || o.Flow == o.Checkpoints:
		return f("Flow", "flow-collection", "must differ from the events, errors and checkpoints collections")
	}
	if err := (event.Schema{AttemptsField: o.Schema.AttemptsField}).Validate(); err != nil {
		return f("Schema.AttemptsField", "attempts-field", "%v", err)
	}
	if err := (event.Schema{DefaultType: o.Schema.DefaultType}).Validate(); err != nil {
		return f("Schema.DefaultType", "default-type", "%v", err)
	}
	return o.Schema.Validate()
}
