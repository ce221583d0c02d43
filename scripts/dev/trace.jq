# Prints one event's spans, from the console exporter's output of the local
# run (go run ./scripts/dev -traces console), as tab-separated rows: the
# application's insert, each publish and run, with their trace, span,
# parent, attempt, outcome and links. See README, Tracing.
#
#   grep '^{' spans.out | jq -r -s --arg id EVENT_ID -f scripts/dev/trace.jq | column -t -s "$(printf '\t')"
def attr($k): ([.Attributes[]? | select(.Key == $k) | .Value.Value] | first) // "";
def short: .[0:8];
def dash: if . == "" then "-" else . end;
(map(select(attr("messaging.message.id") == $id))) as $ev
| ($ev | map(select(.Name | startswith("send"))) | sort_by(.StartTime) | first | .Parent.SpanID) as $insert
| ["START (UTC)", "TRACE", "SPAN", "PARENT", "NAME", "ATTEMPT", "OUTCOME", "LINKS"],
  ((map(select(.SpanContext.SpanID == $insert)) + $ev) | sort_by(.StartTime)[]
   | [(.StartTime | .[11:23]), (.SpanContext.TraceID | short), (.SpanContext.SpanID | short),
      (if .Parent.SpanID == "0000000000000000" then "-" else (.Parent.SpanID | short) end),
      .Name, (attr("retrigger.attempt") | tostring | dash), (attr("retrigger.outcome") | dash),
      ([.Links[]? | ((.Attributes[0].Value.Value) + "=" + (.SpanContext.SpanID | short))] | join(" "))])
| @tsv
