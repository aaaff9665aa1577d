"""The `vidinfer` command and pipeline files: every unusable input ends in exit code 2 and one
`vidinfer: error:` line naming the file, the key and what is expected; never a traceback."""

import copy
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidinfer.config import PipelineConfig, _Settings, parse_pipeline
from vidinfer.errors import ConfigError
from vidinfer.publish import Subscriber
from vidinfer.publish.sinks import ZmqSink
from vidinfer.stages import Classify, Detect

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models" / "shapes"
CLIP_A = ROOT / "sample_streams" / "shapes_a.mp4"

DETECTOR_KEYS = ("channel_order, class_thresholds, classes, conf_threshold, input_scale, input_size, intra_op_threads, "
                 "iou_threshold, labels_file, layer, layout, max_detections, model, name, output")
DETECTOR = f"model = '{MODELS / 'detector.onnx'}'\nclasses = ['red', 'green', 'blue']"
STAGE_TYPES = "brand_exposure, classify, detect, python, read_text, track"
SINK_TYPES = "file, python, reliable, zmq"


def _toml(detector="", streams=None, top="", sink=None, extra="", stage_type="detect"):
    """A pipeline file that is valid unless one of the parts says otherwise: a detect stage, a
    ZeroMQ sink only when ``sink`` gives its keys (no sink: nothing is published)."""
    if streams is None:
        streams = [f"id = 'cam-1'\nurl = '{CLIP_A}'\nkeyframes_only = true"]
    text = f"{top}\n[[stages]]\ntype = '{stage_type}'\n{detector or DETECTOR}\n"
    if sink is not None:
        text += f"[[sinks]]\ntype = 'zmq'\n{sink}\n"
    return text + "".join(f"[[streams]]\n{s}\n" for s in streams) + extra


def _vidinfer(*args, cwd, timeout=60):
    return subprocess.run([sys.executable, "-m", "vidinfer", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _assert_usage_error(proc, expected_line):
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [expected_line]
    assert proc.returncode == 2
    assert proc.stdout == ""


SHADE = (f"[[stages]]\ntype = 'classify'\nname = 'shade'\nmodel = '{MODELS / 'shade.onnx'}'\n"
         "labels = ['bright', 'dim']\n")

BAD_PIPELINES = [
    ("toml_syntax", 'name = "unterminated\n' + _toml(),
     "vidinfer: error: pipe.toml: not valid TOML (Illegal character '\\n' (at line 1, column 21)); "
     "fix the syntax there"),
    ("unknown_key", _toml(detector=DETECTOR + "\nconf_treshold = 0.3"),
     "vidinfer: error: pipe.toml: unknown key 'stages[0].conf_treshold' (did you mean 'conf_threshold'?); "
     f"allowed keys here: {DETECTOR_KEYS}"),
    ("wrong_type", _toml(top="max_batch_size = 'eight'"),
     "vidinfer: error: pipe.toml: key 'max_batch_size': input should be a valid integer, unable to parse "
     "string as an integer, got 'eight'"),
    ("missing_key", _toml(detector="classes = ['red', 'green', 'blue']"),
     "vidinfer: error: pipe.toml: key 'stages[0].model' is required but missing; add it"),
    ("missing_model_file", _toml(detector="model = 'nothere.onnx'\nclasses = ['a']"),
     "vidinfer: error: pipe.toml: key 'stages[0].model': file 'nothere.onnx' does not exist; fix the path "
     "(relative paths are relative to the pipeline file)"),
    ("duplicate_stream_id", _toml(streams=[f"id = 'cam-1'\nurl = '{CLIP_A}'"] * 2),
     "vidinfer: error: pipe.toml: key 'streams': stream id 'cam-1' is used twice; give every stream its own id"),
    ("infinite_number", _toml(top="max_delay_ms = inf"),
     "vidinfer: error: pipe.toml: key 'max_delay_ms': input should be a finite number, got inf"),
    ("duplicate_classifier_name", _toml(extra=SHADE * 2),
     "vidinfer: error: pipe.toml: stage name 'shade' is used twice; give every stage its own name"),
    ("negative_input_size", _toml(detector=DETECTOR + "\ninput_size = [-640, 640]"),
     "vidinfer: error: pipe.toml: key 'stages[0].input_size[0]': input should be greater than 0, got -640"),
    ("class_threshold_of_no_class", _toml(detector=DETECTOR + "\nclass_thresholds = {purple = 0.7, red = 0.6}"),
     "vidinfer: error: pipe.toml: stage 'detect:objects': class_thresholds names 'purple', not a class of the model "
     "(red, green, blue); use the class names as the labels give them"),
    ("class_threshold_above_1", _toml(detector=DETECTOR + "\nclass_thresholds = {red = 1.5}"),
     "vidinfer: error: pipe.toml: key 'stages[0].class_thresholds.red': input should be less than or equal to 1, "
     "got 1.5"),
    ("segment_ends_before_it_starts", _toml(detector=DETECTOR + "\nlayer = 'logo'", extra=(
        "[[stages]]\ntype = 'brand_exposure'\nbrands = [{name = 'red'}]\n"
        "segments = [{name = 'first half', start_s = 5, end_s = 2}]\n")),
     "vidinfer: error: pipe.toml: key 'stages[1].segments[0]': segment 'first half' ends (end_s = 2) before it starts "
     "(start_s = 5); give an end_s after start_s"),
    ("priced_segment_without_rate_card", _toml(detector=DETECTOR + "\nlayer = 'logo'", extra=(
        "[[stages]]\ntype = 'brand_exposure'\nbrands = [{name = 'red'}]\n"
        "segments = [{name = 'prime', start_s = 0, end_s = 2, per_30s = 500}]\n")),
     "vidinfer: error: pipe.toml: key 'stages[1]': segment 'prime' has a price (per_30s) but there is no rate_card to "
     "name its currency; add rate_card = { currency = \"EUR\", per_30s = ... }"),
    ("model_input_does_not_fit", _toml(detector=DETECTOR + "\ninput_size = [320, 320]"),
     "vidinfer: error: pipe.toml: stage 'detect:objects': detector model 'detector.onnx' input 'images' is 640x640 "
     "(shape ['batch', 3, 640, 640]) but the configuration says input_size = [320, 320]; make them agree"),
    # The fixed tables of vidinfer 0.1 are refused, each with where it moved.
    ("old_detector_table", _toml(extra=f"[detector]\n{DETECTOR}\n"),
     "vidinfer: error: pipe.toml: key 'detector': pipeline files now list their stages and sinks; move [detector] "
     "into a [[stages]] table with type = \"detect\" (docs/configuration.md, 'Pipeline files of vidinfer 0.1')"),
    ("old_classifiers_table", _toml(extra=SHADE.replace("[[stages]]\ntype = 'classify'", "[[classifiers]]")),
     "vidinfer: error: pipe.toml: key 'classifiers': pipeline files now list their stages and sinks; move "
     "[classifiers] into [[stages]] tables with type = \"classify\" (after the detect stage) (docs/configuration.md, "
     "'Pipeline files of vidinfer 0.1')"),
    ("old_tracker_table", _toml(extra="[tracker]\nmax_lost_s = 1.0\n"),
     "vidinfer: error: pipe.toml: key 'tracker': pipeline files now list their stages and sinks; move [tracker] "
     "into a [[stages]] table with type = \"track\" (brand impact: the tracker table of its brand_exposure stage) "
     "(docs/configuration.md, 'Pipeline files of vidinfer 0.1')"),
    ("old_brand_impact_table", _toml(extra="[brand_impact]\nbrands = [{name = 'VOLTA'}]\n"),
     "vidinfer: error: pipe.toml: key 'brand_impact': pipeline files now list their stages and sinks; move "
     "[brand_impact] into [[stages]] tables with type = \"read_text\" and type = \"brand_exposure\" "
     "(docs/configuration.md, 'Pipeline files of vidinfer 0.1')"),
    ("old_publish_table", _toml(extra="[publish]\nendpoint = 'tcp://127.0.0.1:5555'\n"),
     "vidinfer: error: pipe.toml: key 'publish': pipeline files now list their stages and sinks; move [publish] "
     "into a [[sinks]] table with type = \"zmq\" (reliable_endpoint: type = \"reliable\"; file: type = \"file\") "
     "(docs/configuration.md, 'Pipeline files of vidinfer 0.1')"),
    # Stage and sink types: unknown ones list the types; a misspelled one also names the closest.
    ("unknown_stage_type", _toml(stage_type="segment"),
     f"vidinfer: error: pipe.toml: key 'stages[0].type': unknown stage type 'segment'; types: {STAGE_TYPES}"),
    ("misspelled_stage_type", _toml(stage_type="detekt"),
     "vidinfer: error: pipe.toml: key 'stages[0].type': unknown stage type 'detekt' (did you mean 'detect'?); "
     f"types: {STAGE_TYPES}"),
    ("misspelled_sink_type", _toml(extra="[[sinks]]\ntype = 'zmqq'\n"),
     "vidinfer: error: pipe.toml: key 'sinks[0].type': unknown sink type 'zmqq' (did you mean 'zmq'?); "
     f"types: {SINK_TYPES}"),
    ("stage_type_not_a_string", _toml(extra=SHADE.replace("type = 'classify'", "type = ['classify']")),
     "vidinfer: error: pipe.toml: key 'stages[1].type': unknown stage type ['classify'] (did you mean 'classify'?); "
     f"types: {STAGE_TYPES}"),
    ("missing_stage_type", _toml(extra=SHADE.replace("type = 'classify'\n", "")),
     f"vidinfer: error: pipe.toml: key 'stages[1].type' is required but missing; add one of: {STAGE_TYPES}"),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in BAD_PIPELINES], ids=[c[0] for c in BAD_PIPELINES])
def test_bad_pipeline_file_is_one_error_line_and_exit_code_2(tmp_path, text, expected):
    (tmp_path / "pipe.toml").write_text(text)
    _assert_usage_error(_vidinfer("run", "pipe.toml", cwd=tmp_path), expected)


def test_missing_pipeline_file_is_one_error_line_and_exit_code_2(tmp_path):
    _assert_usage_error(_vidinfer("run", "nothere.toml", cwd=tmp_path),
                        "vidinfer: error: nothere.toml: file not found; give the path of a pipeline .toml file")


def test_model_file_that_is_not_onnx_names_the_pipeline_file(tmp_path):
    (tmp_path / "fake.onnx").write_bytes(b"not a model")
    (tmp_path / "pipe.toml").write_text(_toml(detector="model = 'fake.onnx'\nclasses = ['a']"))
    proc = _vidinfer("run", "pipe.toml", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("vidinfer: error: pipe.toml: stage 'detect:objects': detector model file 'fake.onnx' is "
                           "not a loadable ONNX model (")
    assert line.endswith("); export the model to ONNX and point to the .onnx file")


def test_info_lists_onnxruntime_available_and_cuda_with_a_reason(tmp_path):
    proc = _vidinfer("info", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {tuple(line.split()[:2]): line.split(None, 3)[2:] for line in proc.stdout.splitlines()
            if line.split()[:1] in (["engine"], ["device"])}  # one-word names: kind, name, yes/no, detail
    available, detail = rows[("engine", "onnxruntime")]
    assert available == "yes" and "CPUExecutionProvider" in detail
    available, detail = rows[("device", "cuda")]
    assert available in ("yes", "no") and detail.strip()  # a device count, or why not
    assert rows[("device", "cpu")][0] == "yes"
    assert "device = 'auto' runs on: " in proc.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="ipc:// endpoints need a Unix socket")
def test_publish_option_overrides_the_endpoint_in_the_file(tmp_path):
    # The file's endpoint is a port that is already taken: publishing there would fail with exit 2.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    (tmp_path / "pipe.toml").write_text(_toml(
        sink=f"endpoint = 'tcp://127.0.0.1:{port}'\nwait_for_subscribers = 1\nwait_timeout_s = 30"))
    endpoint = f"ipc://{tmp_path}/results.sock"
    received = []
    with Subscriber(endpoint) as sub:
        def collect():
            for msg in sub.iter(timeout=30):
                received.append(msg)
                if msg.kind == "end_of_stream":
                    return

        thread = threading.Thread(target=collect)
        thread.start()
        try:
            proc = _vidinfer("run", "pipe.toml", "--publish", endpoint, "--report", "report.json", cwd=tmp_path)
        finally:
            thread.join(40)
            taken.close()
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    frames = [m.body["frame_no"] for m in received if m.kind == "detections"]
    assert frames == [0, 25, 50, 75]
    assert received[-1].kind == "end_of_stream" and received[-1].body["reason"] == "end of file"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["streams"]["cam-1"]["frames_analysed"] == 4
    assert report["messages_sent"] >= len(received)


# ------------------------------------------------------------------ property: no other exception

VALID = {
    "name": "prop",
    "max_batch_size": 4,
    "stages": [{"type": "detect", "model": "detector.onnx", "labels_file": "labels.txt", "conf_threshold": 0.5},
               {"type": "classify", "name": "shade", "model": "shade.onnx", "labels": ["bright", "dim"],
                "operate_on_classes": ["red"]}],
    "sinks": [{"type": "zmq", "endpoint": "tcp://127.0.0.1:5555"}],
    "streams": [{"id": "cam-1", "url": "a.mp4", "sample_fps": 5.0, "options": {"rtsp_transport": "tcp"}}],
}
TABLES = [(), ("stages", 0), ("stages", 1), ("sinks", 0), ("streams", 0), ("streams", 0, "options")]

# Text leans on characters that break messages over lines or confuse paths.
text = st.text(st.one_of(st.characters(), st.sampled_from("\n\r\t\x00\u2028/.'\"")), max_size=20)
field_names = sorted({"type", *(name for model in (_Settings, _Settings.model_fields["streams"].annotation.__args__[0],
                                                   Detect, Classify, ZmqSink)
                                  for name in model.model_fields)})
keys = st.one_of(st.sampled_from(field_names), text.filter(bool))
scalars = st.one_of(text, st.integers(-2**63, 2**63 - 1), st.floats(), st.booleans(),
                    st.dates(), st.datetimes(), st.times())
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(keys, scalars, max_size=3))
mutation = st.tuples(st.sampled_from(["insert", "remove", "replace"]), st.sampled_from(TABLES), keys,
                     st.integers(0, 10), values)


def _table(doc, path):
    """The table at ``path``, or None when an earlier mutation removed or replaced it."""
    for part in path:
        try:
            doc = doc[part]
        except (KeyError, IndexError, TypeError):
            return None
    return doc if isinstance(doc, dict) else None


def test_valid_document_for_the_property_test_is_valid():
    config = parse_pipeline(copy.deepcopy(VALID), "prop.toml", MODELS)
    assert isinstance(config, PipelineConfig)
    assert [type(s) for s in config.stages] == [Detect, Classify] and [type(s) for s in config.sinks] == [ZmqSink]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_documents_validate_or_raise_one_line_config_error(mutations):
    doc = copy.deepcopy(VALID)
    for op, path, key, index, value in mutations:
        table = _table(doc, path)
        if table is None:
            continue
        if op == "insert":
            table[key] = value
        elif table:
            existing = sorted(table)[index % len(table)]
            if op == "remove":
                del table[existing]
            else:
                table[existing] = value
    try:
        spec = parse_pipeline(doc, "prop.toml", MODELS)
    except ConfigError as exc:
        msg = str(exc)
        assert msg.startswith("prop.toml: ")
        assert len(msg.splitlines()) == 1, msg
    else:
        assert isinstance(spec, PipelineConfig)


def test_key_with_a_line_break_is_reported_on_one_line():
    doc = copy.deepcopy(VALID)
    doc["streams"][0]["options"]["a\nb"] = 1
    with pytest.raises(ConfigError) as err:
        parse_pipeline(doc, "prop.toml", MODELS)
    assert str(err.value) == "prop.toml: key 'streams[0].options.a\\nb': input should be a valid string, got 1"


def test_model_path_too_long_for_the_file_system_is_a_config_error():
    doc = copy.deepcopy(VALID)
    doc["stages"][0]["model"] = "m" * 300 + ".onnx"
    with pytest.raises(ConfigError) as err:
        parse_pipeline(doc, "prop.toml", Path("/tmp"))
    assert str(err.value) == (f"prop.toml: key 'stages[0].model': file '/tmp/{'m' * 300}.onnx' cannot be read "
                              "(File name too long); fix the path")


def test_publish_endpoint_in_use_names_the_file_and_key(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        endpoint = f"tcp://127.0.0.1:{held.getsockname()[1]}"
        (tmp_path / "pipe.toml").write_text(_toml(sink=f"endpoint = '{endpoint}'"))
        proc = _vidinfer("run", "pipe.toml", cwd=tmp_path)
    _assert_usage_error(proc, f"vidinfer: error: pipe.toml: sink 'zmq': key 'endpoint': cannot bind publish endpoint "
                              f"'{endpoint}' (Address already in use); choose a free port or a valid endpoint "
                              "such as tcp://127.0.0.1:5555")
