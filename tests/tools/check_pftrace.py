"""Check a Perfetto trace (.pftrace) with Perfetto's own compiled schema and print what it holds.

usage: check_pftrace.py [--dump] TRACE | --each TRACE...   (PYTHONPATH: PyPI's `perfetto` package and `protobuf`,
                                 provisioned by scripts/perfetto-schema.sh)

The trace is parsed as `perfetto.protos.Trace`. It fails (exit 1, the reasons on stderr) on:
- bytes that do not parse, and any field the schema does not know or that has the wrong wire
  type (protobuf keeps both as unknown fields: none may be left, at any depth);
- a packet without `trusted_packet_sequence_id`; a sequence whose first packet does not
  clear its incremental state (`SEQ_INCREMENTAL_STATE_CLEARED`, `first_packet_on_sequence`);
  a packet with interned data or interned ids that does not set `SEQ_NEEDS_INCREMENTAL_STATE`;
- timestamps that go back on a sequence;
- an interned id used before its packet sequence defined it, or defined twice differently
  (event names, categories, debug annotation names, function names, frames, callstacks,
  mappings and mapping paths);
- a track uuid used (by an event, or as a parent) that no TrackDescriptor declared before;
  two descriptors with one uuid; a thread track whose process has no process track;
- slices that do not balance or nest on their track (an end without a begin, a begin left
  open at the end), a slice on a counter track, a counter value on a track that is not a
  counter track or without a value;
- a PerfSample of a thread no thread track describes, or without a callstack.

On success it prints JSON: the clock, processes, threads, slices (track, name, category,
begin and end in ns, debug annotations), counters by track and samples (each one's frames,
outermost first). With --dump it prints the trace as protobuf's JSON mapping instead (field
names as in the schema), for tests of the writer itself; with --each it checks several traces
and prints, for each, whether it passed and why not (for tests of the checker)."""

import json
import sys

from google.protobuf import json_format
from google.protobuf.unknown_fields import UnknownFieldSet
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

SEQ_INCREMENTAL_STATE_CLEARED = 1
SEQ_NEEDS_INCREMENTAL_STATE = 2
TrackEvent = pb.TrackEvent

errors = []


def fail(msg):
    errors.append(msg)


def unknown_fields(msg, path):
    """Every unknown (or ill-typed) field, at any depth."""
    n = len(UnknownFieldSet(msg))
    if n:
        fail(f"{path}: {n} field(s) the schema does not know or of the wrong type")
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        items = value if fd.is_repeated else [value]
        for i, item in enumerate(items):
            unknown_fields(item, f"{path}.{fd.name}[{i}]" if fd.is_repeated else f"{path}.{fd.name}")


def check(path):
    """The trace's account, or None with the problems in `errors`."""
    errors.clear()
    data = open(path, "rb").read()
    trace = pb.Trace()
    try:
        trace.ParseFromString(data)
    except Exception as e:  # DecodeError and friends
        fail(f"not a Perfetto trace: {e}")
        return None
    unknown_fields(trace, "Trace")
    if not trace.packet:
        fail("no packets")

    sequences = {}  # id -> {"last_ts", "interned": {kind: {iid: value}}}
    tracks = {}  # uuid -> descriptor
    process_pids = set()
    thread_of = {}  # (pid, tid) -> uuid
    open_slices = {}  # uuid -> [slice]
    slices, counters, samples = [], {}, []
    clock_id = None
    primary_clock = None
    kinds = [
        "event_names",
        "event_categories",
        "debug_annotation_names",
        "function_names",
        "frames",
        "callstacks",
        "mappings",
        "mapping_paths",
    ]

    for i, p in enumerate(trace.packet):
        where = f"packet {i}"
        if not p.HasField("trusted_packet_sequence_id"):
            fail(f"{where}: no trusted_packet_sequence_id")
            continue
        seq_id = p.trusted_packet_sequence_id
        seq = sequences.get(seq_id)
        if seq is None:
            if not (p.sequence_flags & SEQ_INCREMENTAL_STATE_CLEARED) or not p.first_packet_on_sequence:
                fail(f"{where}: first packet of sequence {seq_id} does not clear its incremental state")
            seq = sequences[seq_id] = {"last_ts": None, "interned": {k: {} for k in kinds}, "clock": None}
        if p.sequence_flags & SEQ_INCREMENTAL_STATE_CLEARED:
            seq["interned"] = {k: {} for k in kinds}
        if p.HasField("trace_packet_defaults") and p.trace_packet_defaults.HasField("timestamp_clock_id"):
            seq["clock"] = p.trace_packet_defaults.timestamp_clock_id
            clock_id = seq["clock"]
        if p.HasField("clock_snapshot") and p.clock_snapshot.HasField("primary_trace_clock"):
            primary_clock = p.clock_snapshot.primary_trace_clock
            if clock_id is not None and primary_clock != clock_id:
                fail(f"{where}: the trace's primary clock is not the sequence's clock")
        interned = seq["interned"]
        uses_interning = p.HasField("interned_data") or p.HasField("perf_sample") or (
            p.HasField("track_event") and (p.track_event.name_iid or p.track_event.category_iids)
        )
        if uses_interning and not p.sequence_flags & (SEQ_NEEDS_INCREMENTAL_STATE | SEQ_INCREMENTAL_STATE_CLEARED):
            fail(f"{where}: uses interned data without SEQ_NEEDS_INCREMENTAL_STATE")

        # Interned data of this packet first (it applies to the packet's own content).
        if p.HasField("interned_data"):
            d = p.interned_data
            for kind in kinds:
                for entry in getattr(d, kind):
                    if entry.iid == 0:
                        fail(f"{where}: {kind} with iid 0")
                    old = interned[kind].get(entry.iid)
                    if old is not None and old != entry:
                        fail(f"{where}: {kind} iid {entry.iid} redefined")
                    interned[kind][entry.iid] = entry
            for fr in d.frames:
                if fr.function_name_id not in interned["function_names"]:
                    fail(f"{where}: frame {fr.iid} names function {fr.function_name_id}, not interned")
                if fr.mapping_id not in interned["mappings"]:
                    fail(f"{where}: frame {fr.iid} in mapping {fr.mapping_id}, not interned")
            for cs in d.callstacks:
                for fid in cs.frame_ids:
                    if fid not in interned["frames"]:
                        fail(f"{where}: callstack {cs.iid} uses frame {fid}, not interned")
            for m in d.mappings:
                for sid in m.path_string_ids:
                    if sid not in interned["mapping_paths"]:
                        fail(f"{where}: mapping {m.iid} uses path {sid}, not interned")

        if p.HasField("timestamp"):
            if seq["last_ts"] is not None and p.timestamp < seq["last_ts"]:
                fail(f"{where}: timestamp {p.timestamp} goes back (after {seq['last_ts']}) on sequence {seq_id}")
            seq["last_ts"] = p.timestamp

        if p.HasField("track_descriptor"):
            t = p.track_descriptor
            if not t.HasField("uuid") or t.uuid in tracks:
                fail(f"{where}: track uuid {t.uuid} missing or declared twice")
            if t.HasField("parent_uuid") and t.parent_uuid not in tracks:
                fail(f"{where}: track {t.uuid}'s parent {t.parent_uuid} is not declared")
            if t.HasField("process"):
                process_pids.add(t.process.pid)
            if t.HasField("thread"):
                if t.thread.pid not in process_pids:
                    fail(f"{where}: thread {t.thread.tid}'s process {t.thread.pid} has no process track")
                thread_of[(t.thread.pid, t.thread.tid)] = t.uuid
            tracks[t.uuid] = t

        if p.HasField("track_event"):
            e = p.track_event
            if not p.HasField("timestamp"):
                fail(f"{where}: track event without timestamp")
            if e.track_uuid not in tracks:
                fail(f"{where}: event on undeclared track {e.track_uuid}")
                continue
            track = tracks[e.track_uuid]
            is_counter = track.HasField("counter")
            if e.name_iid and e.name_iid not in interned["event_names"]:
                fail(f"{where}: event name iid {e.name_iid} not interned")
            for c in e.category_iids:
                if c not in interned["event_categories"]:
                    fail(f"{where}: category iid {c} not interned")
            if e.type == TrackEvent.TYPE_COUNTER:
                if not is_counter:
                    fail(f"{where}: counter value on track {e.track_uuid}, which is not a counter track")
                if not (e.HasField("counter_value") or e.HasField("double_counter_value")):
                    fail(f"{where}: counter event without a value")
                value = e.double_counter_value if e.HasField("double_counter_value") else e.counter_value
                counters.setdefault(e.track_uuid, {"uuid": e.track_uuid, "name": track.name, "parent": track.parent_uuid, "values": []})[
                    "values"
                ].append([p.timestamp, value])
            elif e.type in (TrackEvent.TYPE_SLICE_BEGIN, TrackEvent.TYPE_SLICE_END, TrackEvent.TYPE_INSTANT):
                if is_counter:
                    fail(f"{where}: slice on counter track {e.track_uuid}")
                stack = open_slices.setdefault(e.track_uuid, [])
                if e.type == TrackEvent.TYPE_SLICE_BEGIN:
                    args = {}
                    for a in e.debug_annotations:
                        if a.HasField("name_iid"):
                            if a.name_iid not in interned["debug_annotation_names"]:
                                fail(f"{where}: debug annotation name iid {a.name_iid} not interned")
                                continue
                            name = interned["debug_annotation_names"][a.name_iid].name
                        else:
                            name = a.name
                        kind = a.WhichOneof("value")
                        args[name] = getattr(a, kind) if kind else None
                    stack.append(
                        {
                            "track": e.track_uuid,
                            "name": interned["event_names"][e.name_iid].name if e.name_iid in interned["event_names"] else e.name,
                            "category": [interned["event_categories"][c].name for c in e.category_iids if c in interned["event_categories"]],
                            "begin": p.timestamp,
                            "args": args,
                            "depth": len(stack),
                        }
                    )
                elif e.type == TrackEvent.TYPE_SLICE_END:
                    if not stack:
                        fail(f"{where}: slice end without a begin on track {e.track_uuid}")
                        continue
                    s = stack.pop()
                    if p.timestamp < s["begin"]:
                        fail(f"{where}: slice ends before it begins")
                    s["end"] = p.timestamp
                    slices.append(s)
            else:
                fail(f"{where}: track event of type {e.type}")

        if p.HasField("perf_sample"):
            s = p.perf_sample
            if (s.pid, s.tid) not in thread_of:
                fail(f"{where}: sample of thread {s.tid} (pid {s.pid}) that no thread track describes")
            if s.callstack_iid not in interned["callstacks"]:
                fail(f"{where}: sample's callstack {s.callstack_iid} not interned")
                continue
            frames = []
            for fid in interned["callstacks"][s.callstack_iid].frame_ids:
                fr = interned["frames"].get(fid)
                fn = interned["function_names"].get(fr.function_name_id) if fr else None
                frames.append(fn.str.decode("utf-8") if fn else None)
            samples.append({"pid": s.pid, "tid": s.tid, "ts": p.timestamp, "frames": frames})

    for uuid, stack in open_slices.items():
        if stack:
            fail(f"track {uuid}: {len(stack)} slice(s) never end")
    if errors:
        return None
    return {
        "packets": len(trace.packet),
        "clock_id": clock_id,
        "primary_trace_clock": primary_clock,
        "processes": [
            {"uuid": t.uuid, "pid": t.process.pid, "name": t.process.process_name, "cmdline": list(t.process.cmdline)}
            for t in tracks.values()
            if t.HasField("process")
        ],
        "threads": [
            {"uuid": t.uuid, "pid": t.thread.pid, "tid": t.thread.tid, "name": t.thread.thread_name}
            for t in tracks.values()
            if t.HasField("thread")
        ],
        "slices": sorted(slices, key=lambda s: (s["track"], s["begin"])),
        "counters": list(counters.values()),
        "tracks": [{"uuid": t.uuid, "name": t.name, "parent": t.parent_uuid if t.HasField("parent_uuid") else None} for t in tracks.values()],
        "samples": samples,
    }


def main(path):
    out = check(path)
    if out is None:
        for e in errors[:50]:
            print(f"check_pftrace: {e}", file=sys.stderr)
        print(f"check_pftrace: {len(errors)} problem(s) in {path}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    return 0


def each(paths):
    """Several traces at once: a JSON list of {path, ok, errors} (for the checker's own tests)."""
    results = []
    for path in paths:
        ok = check(path) is not None
        results.append({"path": path, "ok": ok, "errors": list(errors)})
    json.dump(results, sys.stdout)
    return 0


def dump(path):
    trace = pb.Trace()
    trace.ParseFromString(open(path, "rb").read())
    unknown_fields(trace, "Trace")
    if errors:
        print(f"check_pftrace: {errors[0]}", file=sys.stderr)
        return 1
    json.dump(json_format.MessageToDict(trace, preserving_proto_field_name=True), sys.stdout)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--dump":
        sys.exit(dump(sys.argv[2]))
    if sys.argv[1] == "--each":
        sys.exit(each(sys.argv[2:]))
    sys.exit(main(sys.argv[1]))
