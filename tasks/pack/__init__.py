"""The pack stage: documents -> EOS-delimited rows of exactly `seq_len` tokens, as Parquet shards.

    sources (tasks/sources.py) -> tokenizer (tasks/tokenizer.py: loaded, or trained on a bounded sample)
    -> shards of the sources, tokenized in parallel on the stage's task runner (encode.py)
    -> rows cut deterministically from the shards in order, then written (rows.py, run.py)

`prefect_tasks.py` declares the Prefect tasks (retries, cache policy); `flows/pack.py` calls them in order.
The output is the same, byte for byte, whatever runs the tokenization (threads, processes, Dask).
"""

from tasks.pack.run import pack_documents, pack_key  # noqa: F401 (the stage's entry point for scripts/tests)
