"""Where every stage reads and writes."""

from __future__ import annotations

from dataclasses import dataclass

from primer.settings import knob


@dataclass
class StoreConfig:
    root: str = knob("./artifacts", help="Artifact store root: a local folder or any fsspec URL (s3://bucket/prefix).")
    endpoint_url: str = knob("", help="S3-compatible endpoint (MinIO, moto, ...); empty = AWS or $AWS_ENDPOINT_URL.")
    region: str = knob("", help="S3 region name; empty = the client's default.")
    credentials_block: str = knob(
        "", help="Name of a Prefect Secret block holding JSON {\"key\": ..., \"secret\": ...} for the store; "
                 "empty = credentials from the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles).")
