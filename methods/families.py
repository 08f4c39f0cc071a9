"""The family contracts: which streams of a bitstream each target is sent, and so what it costs.

A method declares *what it writes* and *what each target needs*, in terms of
its own stream names; the contract of its family turns that into the list of
streams the runner charges and hands to ``decode`` (``Method.streams_for``
delegates here, so the runner never takes a method's word for a bit count).

======  ===========================  ==============================================================
family  declare with                 a target is charged
======  ===========================  ==============================================================
SBAR    :class:`WholeStream`         every stream (one bitstream; the task runs on x̂). The default.
SBMD    :class:`WholeStream`         every stream (one bitstream; task heads read the latent)
MBHD    :class:`LayeredStreams`      the prefix of the ordered layers up to the last layer it needs;
                                     the human every layer
MBID    :class:`IndependentStreams`  exactly the stream(s) declared for it (the human its own)
======  ===========================  ==============================================================

How a method declares it (override ``Method.contract``)::

    class MyScalable(Method):
        family = Family.MBHD

        def contract(self) -> StreamContract:
            return LayeredStreams(
                layers={"base": ["header", "z"], "task": ["y.task"], "rest": ["y.rest"]},
                needs={"detection": "task"},  # target -> last layer it needs
            )

    class MyFeatureStream(Method):
        family = Family.MBID

        def contract(self) -> StreamContract:
            return IndependentStreams({HUMAN: ["image"], "classification": ["features"]})

Streams are charged in layer (or declared) order; every name must be a
stream of the bitstream, and for MBHD the layers must cover the whole
bitstream (the human, charged every layer, pays for every byte written).
A target a method does not serve is an error naming the targets it does.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bench.methods.base import HUMAN, Bitstream, Family

if TYPE_CHECKING:
    from bench.methods.base import Method


class ContractError(ValueError):
    """A contract that does not fit the bitstream or the target (names what is wrong)."""


class StreamContract(abc.ABC):
    """What each target of one method is sent; ``family`` is the family it implements."""

    family: Family

    @abc.abstractmethod
    def streams_for(self, target: str, bitstream: Bitstream) -> list[str]:
        """Names of the streams ``target`` receives (and is charged for), in order."""

    def targets(self) -> list[str] | None:
        """The targets this contract serves by name; None when it serves any target."""
        return None


def _check_present(names: Sequence[str], bitstream: Bitstream, what: str) -> None:
    missing = [n for n in names if n not in bitstream.streams]
    if missing:
        raise ContractError(f"{what}: stream(s) {missing} are not in the bitstream (it has {list(bitstream.streams)})")


class WholeStream(StreamContract):
    """SBAR and SBMD: one bitstream, every target receives all of it."""

    def __init__(self, family: Family = Family.SBAR):
        if family not in (Family.SBAR, Family.SBMD):
            raise ContractError(f"WholeStream is the contract of SBAR and SBMD, not {family.value}")
        self.family = family

    def streams_for(self, target: str, bitstream: Bitstream) -> list[str]:
        return list(bitstream.streams)


class LayeredStreams(StreamContract):
    """MBHD: ordered layers, each a list of streams; a target receives the layers up to the one it needs.

    ``layers`` maps layer name -> its stream names, in layer order (base
    first). ``needs`` maps each machine target to the last layer it needs;
    ``default_layer`` (if given) serves targets not in ``needs``. The human
    receives every layer.
    """

    family = Family.MBHD

    def __init__(
        self,
        layers: Mapping[str, Sequence[str]],
        needs: Mapping[str, str],
        default_layer: str | None = None,
    ):
        if not layers:
            raise ContractError("LayeredStreams: no layers declared")
        self.layers = {name: list(streams) for name, streams in layers.items()}
        seen: dict[str, str] = {}
        for layer, streams in self.layers.items():
            for s in streams:
                if s in seen:
                    raise ContractError(f"stream {s!r} is in layer {seen[s]!r} and in layer {layer!r}")
                seen[s] = layer
        unknown = {t: la for t, la in needs.items() if la not in self.layers}
        if default_layer is not None and default_layer not in self.layers:
            unknown["<default>"] = default_layer
        if unknown:
            raise ContractError(f"targets need unknown layer(s) {unknown}; layers are {list(self.layers)}")
        if HUMAN in needs:
            raise ContractError(f"the {HUMAN!r} target always receives every layer; do not list it in needs")
        self.needs = dict(needs)
        self.default_layer = default_layer

    def targets(self) -> list[str] | None:
        return None if self.default_layer is not None else [HUMAN, *self.needs]

    def last_layer(self, target: str) -> str:
        """The last layer ``target`` needs (the human: the last layer)."""
        if target == HUMAN:
            return list(self.layers)[-1]
        if target in self.needs:
            return self.needs[target]
        if self.default_layer is not None:
            return self.default_layer
        raise ContractError(f"no layer is declared for target {target!r}; this method serves {self.targets()}")

    def prefix(self, target: str) -> list[str]:
        """The layers ``target`` receives, base first."""
        names = list(self.layers)
        return names[: names.index(self.last_layer(target)) + 1]

    def streams_for(self, target: str, bitstream: Bitstream) -> list[str]:
        declared = [s for streams in self.layers.values() for s in streams]
        stray = [s for s in bitstream.streams if s not in declared]
        if stray:
            raise ContractError(f"stream(s) {stray} belong to no layer (layers: {self.layers})")
        names = [s for layer in self.prefix(target) for s in self.layers[layer]]
        _check_present(names, bitstream, f"target {target!r}")
        return names


class IndependentStreams(StreamContract):
    """MBID: each target receives exactly its own stream(s), the human included.

    ``streams`` maps target -> stream names; ``default`` (if given) serves
    machine targets not listed. Streams may be shared (e.g. a header every
    target needs), each target is charged all of its own.
    """

    family = Family.MBID

    def __init__(self, streams: Mapping[str, Sequence[str]], default: Sequence[str] | None = None):
        if HUMAN not in streams:
            raise ContractError(f"an MBID contract must declare the {HUMAN!r} stream(s); it declares {list(streams)}")
        self.streams = {t: list(s) for t, s in streams.items()}
        empty = [t for t, s in self.streams.items() if not s]
        if empty or (default is not None and not default):
            raise ContractError(f"targets with no streams: {empty or ['<default>']}")
        self.default = list(default) if default is not None else None

    def targets(self) -> list[str] | None:
        return None if self.default is not None else list(self.streams)

    def streams_for(self, target: str, bitstream: Bitstream) -> list[str]:
        if target in self.streams:
            names = self.streams[target]
        elif self.default is not None:
            names = self.default
        else:
            raise ContractError(f"no stream is declared for target {target!r}; this method serves {self.targets()}")
        _check_present(names, bitstream, f"target {target!r}")
        return list(names)


def charged_streams(method: Method, target: str, bitstream: Bitstream) -> list[str]:
    """The streams ``method`` must send ``target``: its contract, checked against its family."""
    contract = method.contract()
    if contract.family != method.family:
        raise ContractError(
            f"method {method.name!r} is {method.family.value} but declares a {contract.family.value} contract "
            f"({type(contract).__name__})"
        )
    return contract.streams_for(target, bitstream)
