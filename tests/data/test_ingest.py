"""Ingestion: versions, manifests, sources, and a clear message for each kind of bad input."""

import http.server
import threading
from functools import partial

import pandas as pd
import pytest

from amlkit import paths
from amlkit.data import ingest, sources
from amlkit.data.validation import DataValidationError

GOOD = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n" + (
    "Adelie,Torgersen,39.1,18.7,181,3750,male,2007\n"
    "Gentoo,Biscoe,46.1,13.2,211,4500,female,2007\n"
    "Adelie,Dream,,,,,,2008\n"
    "Chinstrap,Dream,46.5,17.9,192,3500,female,2007\n"
)


def _csv(tmp_path, text, name="data.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


def _nothing_written(project):
    processed = project / "data" / "processed"
    raw = project / "data" / "raw" / "penguins"
    return not raw.exists() and not (processed.exists() and any(processed.iterdir()))


def test_ingest_bundled_default_writes_version_with_manifest(project):
    result = ingest.ingest("penguins", progress=False)
    manifest = result.manifest
    assert result.created
    assert manifest.rows == 344
    assert manifest.version == manifest.sha256[:12]
    assert (result.path / "data.csv").is_file()
    assert manifest.classes == {"Adelie": 152, "Chinstrap": 68, "Gentoo": 124}
    nulls = {c.name: c.null_count for c in manifest.columns}
    assert nulls["sex"] == 11 and nulls["bill_length_mm"] == 2
    assert manifest.schema_origin == "declared"


def test_ingesting_identical_content_writes_nothing_new(project, tmp_path):
    source = _csv(tmp_path, GOOD)
    first = ingest.ingest("penguins", source=source, progress=False)
    stamp = (first.path / "manifest.json").stat().st_mtime_ns
    again = ingest.ingest("penguins", source=source, progress=False)
    assert not again.created
    assert again.manifest.version == first.manifest.version
    assert (first.path / "manifest.json").stat().st_mtime_ns == stamp
    assert len(ingest.list_versions("penguins")) == 1


def test_new_content_gets_a_new_version_and_keeps_the_old(project, tmp_path):
    one = ingest.ingest("penguins", source=_csv(tmp_path, GOOD), progress=False)
    two = ingest.ingest(
        "penguins",
        source=_csv(tmp_path, GOOD + "Gentoo,Biscoe,50,15,220,5000,male,2009\n", "more.csv"),
        progress=False,
    )
    assert one.manifest.version != two.manifest.version
    assert ingest.get_manifest("penguins", "latest").version == two.manifest.version
    assert one.path.exists() and (one.path / "data.csv").read_text() == GOOD


def test_large_file_streams_in_chunks(project, tmp_path, monkeypatch):
    rows = GOOD.splitlines()[1:]
    text = GOOD.splitlines()[0] + "\n" + "\n".join(rows * 2500) + "\n"
    from amlkit.config import DataConfig

    base = DataConfig.load()
    ingestion = base.ingestion.model_copy(update={"chunk_bytes": 4096, "chunk_rows": 777})
    cfg = base.model_copy(update={"ingestion": ingestion})
    result = ingest.ingest("penguins", source=_csv(tmp_path, text), data_config=cfg, progress=False)
    assert result.manifest.rows == 10_000
    assert result.manifest.classes["Adelie"] == 5000
    frame, _ = ingest.load_raw("penguins", data_config=cfg)
    assert len(frame) == 10_000 and frame["bill_length_mm"].dtype == "float64"


def test_parquet_source(project, tmp_path):
    frame = pd.read_csv(_csv(tmp_path, GOOD))
    path = tmp_path / "penguins.parquet"
    frame.to_parquet(path)
    result = ingest.ingest("penguins", source=str(path), progress=False)
    assert result.manifest.format == "parquet" and result.manifest.rows == 4


def test_http_source_from_a_loopback_server(project, tmp_path):
    _csv(tmp_path, GOOD, "served.csv")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/served.csv"
        result = ingest.ingest("penguins", source=url, progress=False)
    finally:
        server.shutdown()
    assert result.manifest.rows == 4
    assert result.manifest.source == url


def test_azureml_uri_without_its_package_says_what_to_install(project):
    with pytest.raises(sources.SourceError, match="azureml-fsspec"):
        ingest.ingest(
            "penguins",
            source="azureml://datastores/workspaceblobstore/paths/p.csv",
            progress=False,
        )


def test_source_credentials_are_not_recorded():
    assert sources.describe_source("https://user:pw@host/x.csv?sig=secret") == "https://host/x.csv"


def test_unconfigured_dataset_infers_and_saves_schema_for_review(project, tmp_path):
    text = "day,reading,label\n" + "".join(
        f"2024-01-{d:02d},{d * 1.5},{'hot' if d % 2 else 'cold'}\n" for d in range(1, 29)
    )
    result = ingest.ingest("sensors", source=_csv(tmp_path, text), target="label", progress=False)
    kinds = result.manifest.kinds
    assert kinds == {"day": "datetime", "reading": "numeric", "label": "categorical"}
    assert (project / "config" / "schemas" / "sensors.json").is_file()
    assert result.manifest.task == "classification"


BAD_INPUTS = {
    "empty": (b"", r"the file is empty \(0 bytes\)"),
    "header only": (GOOD.splitlines()[0] + "\n", r"has a header but no data rows"),
    "missing target": (
        GOOD.replace("species,", "kind,"),
        r"target column 'species' is missing; the columns are \['kind'",
    ),
    "duplicated names": (
        GOOD.replace(",sex,", ",island,"),
        r"duplicated column name 'island' \(columns 2 and 7\)",
    ),
    "ragged rows": (
        GOOD + "Adelie,Dream,40,18,190,3600,male,2008,EXTRA\n",
        r"1 ragged rows: the header has 8 fields but row 5 \(line 6\) has 9",
    ),
    "text in numeric with bounds": (
        GOOD.replace("46.1,13.2", "n/a-ish,13.2"),
        r"column 'bill_length_mm' \(numeric\): 1 values that are not numbers "
        r"\(first: 'n/a-ish' on row 1\)",
    ),
    "undecodable bytes": (
        GOOD.encode() + "Adelie,Dr\xe9am,40,18,190,3600,male,2008\n".encode("latin-1"),
        r"bytes that are not UTF-8 at byte \d+ \(line 6\)",
    ),
    "one class": (
        GOOD.replace("Gentoo", "Adelie").replace("Chinstrap", "Adelie"),
        r"target column 'species' has a single class \('Adelie'\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_with_its_own_message_and_writes_nothing(project, tmp_path, case):
    content, message = BAD_INPUTS[case]
    with pytest.raises(DataValidationError, match=message) as err:
        ingest.ingest("penguins", source=_csv(tmp_path, content), progress=False)
    assert "nothing was written" in str(err.value)
    assert len(err.value.problems) == 1, err.value.problems  # one message for one problem
    assert "(first: )" not in str(err.value)
    assert _nothing_written(project)


def test_undeclared_column_against_declared_schema_is_refused(project, tmp_path):
    text = GOOD.replace(",year\n", ",year,colour\n", 1).replace("2007\n", "2007,red\n")
    text = text.replace("2008\n", "2008,blue\n")
    with pytest.raises(DataValidationError, match=r"column 'colour': a column that the schema"):
        ingest.ingest("penguins", source=_csv(tmp_path, text), progress=False)


def test_unknown_dataset_without_source_says_how_to_fix(project):
    with pytest.raises(ValueError, match=r"not declared in config/data_config\.json"):
        ingest.ingest("nowhere", progress=False)


@pytest.mark.parametrize("name", ["../escape", "", "a/b", "x" * 129, ".hidden", "a;touch x"])
def test_unsafe_dataset_names_are_refused(project, name):
    with pytest.raises(ValueError, match="data set name"):
        ingest.ingest(name, source="bundled:penguins", target="species", progress=False)


def test_paths_follow_amlkit_root(project):
    assert paths.raw_dir() == project / "data" / "raw"
    assert paths.state_dir() == project / ".amlkit"


def test_a_failed_ingestion_leaves_versions_of_other_content_alone(project, tmp_path):
    kept = ingest.ingest("penguins", source=_csv(tmp_path, GOOD), progress=False)
    with pytest.raises(DataValidationError):
        ingest.ingest("penguins", source=_csv(tmp_path, b"", "empty.csv"), progress=False)
    assert sorted(p.name for p in kept.path.parent.iterdir()) == [kept.manifest.version]


def test_two_ingestions_of_one_source_at_once_leave_one_version(project, tmp_path, run_at_once):
    rows = GOOD.splitlines()[1:]
    source = _csv(tmp_path, GOOD.splitlines()[0] + "\n" + "\n".join(rows * 5000) + "\n")
    snippet = f"""
from amlkit.data import ingest
start_together()
result = ingest.ingest("penguins", source={source!r}, progress=False)
print(json.dumps({{"created": result.created, "version": result.manifest.version}}))
"""
    results = run_at_once([snippet, snippet], tmp_path)
    assert sorted(r["created"] for r in results) == [False, True]
    assert len({r["version"] for r in results}) == 1
    folder = project / "data" / "raw" / "penguins"
    assert [p.name for p in folder.iterdir()] == [results[0]["version"]]  # no temporaries
    assert ingest.get_manifest("penguins").rows == 20_000


def test_a_raw_version_without_its_manifest_is_named_not_skipped(project, tmp_path):
    from amlkit.data.manifests import IncompleteVersionError

    source = _csv(tmp_path, GOOD)
    first = ingest.ingest("penguins", source=source, progress=False)
    (first.path / "manifest.json").unlink()
    hint = rf"{first.path} has no manifest\.json.*Remove the folder .* ingest it again"

    with pytest.raises(IncompleteVersionError, match=hint):
        ingest.get_manifest("penguins", "latest")
    with pytest.raises(IncompleteVersionError, match=hint):
        ingest.ingest("penguins", source=source, progress=False)
    assert (first.path / "data.csv").read_text() == GOOD  # nothing removed on the way


# --- a data folder that is a symbolic link out of the project is never written through ---


def _outside(tmp_path):
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    return folder


@pytest.mark.parametrize("link", ["data/raw/penguins", "data/raw", "data"])
def test_ingest_refuses_a_data_folder_that_links_out_of_the_project(project, tmp_path, link):
    outside = _outside(tmp_path)
    (project / link).parent.mkdir(parents=True, exist_ok=True)
    (project / link).symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError) as caught:
        ingest.ingest("penguins", progress=False)
    message = str(caught.value)
    assert f"{project / link} is a symbolic link to {outside}, outside {project}" in message
    assert "replace the link by a folder, or set AMLKIT_ROOT" in message
    assert sorted(p.name for p in outside.rglob("*")) == ["keep.txt"]


def test_ingest_writes_through_a_link_that_stays_in_the_project(project):
    (project / "data" / "big-disk").mkdir(parents=True)
    (project / "data" / "raw").symlink_to(project / "data" / "big-disk", target_is_directory=True)
    result = ingest.ingest("penguins", progress=False)
    assert result.created and (project / "data" / "big-disk" / "penguins").is_dir()


def test_processing_refuses_a_processed_folder_that_links_out_of_the_project(project, tmp_path):
    from amlkit.config import DataConfig
    from amlkit.data import preprocess, stream

    ingest.ingest("penguins", progress=False)
    outside = _outside(tmp_path)
    link = project / "data" / "processed" / "penguins"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match=rf"{link} is a symbolic link to {outside}"):
        stream.preprocess_in_chunks("penguins", split=DataConfig.load().split)
    frame, raw = ingest.load_raw("penguins")
    cleaned = preprocess.clean(frame, raw)
    rows = cleaned.frame
    splits = {"train": rows.iloc[:200], "validation": rows.iloc[200:270], "test": rows.iloc[270:]}
    with pytest.raises(ValueError, match=rf"{link} is a symbolic link to {outside}"):
        preprocess.write_processed(
            splits, raw=raw, cleaned=cleaned, params={}, stratified=False, profile={}
        )
    assert sorted(p.name for p in outside.rglob("*")) == ["keep.txt"]


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["abfs", "az"])
def test_a_blob_storage_source_is_ingested_from_azurite(project, azurite, monkeypatch, scheme):
    fs = azurite.filesystem()
    container = f"ingest-{scheme}"
    if not fs.exists(container):
        fs.mkdir(container)
    with fs.open(f"{container}/landing/penguins.csv", "wb") as handle:
        handle.write(GOOD.encode())
    # credentials from the environment, as on a machine signed in to the storage account
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    source = f"{scheme}://{container}/landing/penguins.csv"
    result = ingest.ingest("penguins", source=source, progress=False)
    assert (result.manifest.rows, result.manifest.source) == (4, source)
    again = ingest.ingest("penguins", source=source, progress=False)
    assert (again.manifest.version, again.created) == (result.manifest.version, False)
    frame, _ = ingest.load_raw("penguins")
    assert frame["species"].tolist() == ["Adelie", "Gentoo", "Adelie", "Chinstrap"]
