"""What a part of injection (GPU, MPI, a CDI spec) adds to a container, and how the parts combine."""

from __future__ import annotations

from dataclasses import dataclass, field

from hpcctl.container.plan import EnvOp, PlanMount


@dataclass
class Injection:
    mounts: list[PlanMount] = field(default_factory=list)
    env: list[EnvOp] = field(default_factory=list)
    ldconfig: bool = False  # rebuild the container's linker cache in the overlay
    notes: list[str] = field(default_factory=list)

    def add(self, part: "Injection") -> None:
        """Append ``part``; a mount whose target is already taken, or an identical env change, is not repeated."""
        targets = {m.target for m in self.mounts}
        for mount in part.mounts:
            if mount.target not in targets:
                targets.add(mount.target)
                self.mounts.append(mount)
        self.env += [op for op in part.env if op not in self.env]
        self.ldconfig = self.ldconfig or part.ldconfig
        self.notes += part.notes
