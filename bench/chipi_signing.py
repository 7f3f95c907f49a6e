"""What one Chipi transfer costs PayGo locally: the SDK's signing of an outside execution.

Every withdrawal, payout and sweep signs once (the SDK's STARK signing is pure Python), so this
is what the outbox pays per send, and what the test suite pays per send it drives. Printed beside
a baseline from the same run: verifying that signature (starknet-py's C++ curve code), and the
whole local preparation the SDK does besides signing (decrypting the key, building and hashing
the outside execution).

    .venv/bin/python bench/chipi_signing.py [--count 10]

No database, no network.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def timed(function, count: int) -> list[float]:
    figures = []
    for _ in range(count):
        start = time.perf_counter()
        function()
        figures.append(time.perf_counter() - start)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    count = parser.parse_args().count

    start = time.perf_counter()
    from chipi_sdk.encryption import decrypt_private_key, encrypt_private_key
    from chipi_sdk.shhh.oe import build_outside_execution, compute_oe_hash
    from chipi_sdk.shhh.signers.stark import build_stark_envelope
    from chipi_sdk.shhh.snip12_hash import Call
    from starknet_py.hash.utils import private_to_stark_key, verify_message_signature

    imported = time.perf_counter() - start

    private_key = int.from_bytes(os.urandom(31), "big")
    public_key = private_to_stark_key(private_key)
    encrypted = encrypt_private_key(hex(private_key), "bench-encrypt-key")
    call = Call(contract_address="0x" + "1" * 63, entrypoint="transfer", calldata=["0x" + "2" * 63, "0x64", "0x0"])
    nonces = iter(range(1, 10 * count + 10))

    def prepare() -> int:
        key = decrypt_private_key(encrypted, "bench-encrypt-key")
        execution = build_outside_execution(nonce=next(nonces), calls=[call])
        assert int(key, 16) == private_key
        return compute_oe_hash(execution, "0x" + "3" * 63, 0x534E5F4D41494E)

    message_hash = prepare()
    envelope = build_stark_envelope(private_key=private_key, message_hash=message_hash)

    preparing = timed(prepare, count)
    signing = timed(lambda: build_stark_envelope(private_key=private_key, message_hash=message_hash), count)
    verifying = timed(lambda: verify_message_signature(message_hash, envelope[3:], public_key), count)

    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[0]
    print(f"load (1 min): {load}; chipi_sdk import: {imported:.2f} s; {count} of each")
    for name, figures in (
        ("baseline: verify a STARK signature (C++)", verifying),
        ("prepare: decrypt key, build + hash the outside execution", preparing),
        ("sign: the SDK's build_stark_envelope", signing),
    ):
        print(f"{name:60s} median {statistics.median(figures) * 1000:8.1f} ms  max {max(figures) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
