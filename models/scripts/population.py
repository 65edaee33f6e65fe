"""Who the simulated people are: the narrow cohort the bundled model is trained on, and the
broader population of the demo's fleet, subgroup by subgroup.

One generator for both (so the only difference between them is *who* is simulated, never
*how*): a pulse (PPG) recording is built from an explicit sequence of beat times, each beat
drawn as NeuroKit2's ``ppg_simulate`` draws it (onset, systolic peak, dicrotic notch and
diastolic peak landmarks, Akima interpolation), then baseline drift, motion artifact and
sensor noise are added with NeuroKit2's ``signal_distort``. ``ppg_simulate`` itself cannot
be used for the broader population: it silently drops its beat-interval randomness when a
beat would be shorter than 300 ms (any irregular rhythm above ~110 bpm) and it has no
premature beats.

Rhythms (the label is what the model must tell apart):

* ``regular``: sinus rhythm. Beat intervals follow the person's heart rate, modulated by
  breathing (respiratory sinus arrhythmia, RSA: the interval lengthens and shortens once per
  breath, more in young people, little during exercise), with a small beat-to-beat jitter.
  A person with premature beats (ectopic beats: a beat that comes early, then a
  compensatory pause) is still in sinus rhythm: ``regular``.
* ``irregular``: an irregularly irregular rhythm like atrial fibrillation: every interval is
  drawn independently around the mean, with a relative spread (``irregularity``) of the
  person's own.

Subgroups (``COHORTS``; each person belongs to one and keeps his or her traits over checks):

=============  =====  ========  ======  ==============  ========  ==================
cohort         ages   HR (bpm)  RSA     irregularity    ectopic   sensor noise
=============  =====  ========  ======  ==============  ========  ==================
``v1-cohort``  40-64  55-85     low     0.25-0.40       none      clean (lab finger)
``reference``  40-64  55-85     low     0.25-0.40       none      clean
``young``      18-29  55-80     strong  0.25-0.40       none      clean
``older``      65-85  55-85     none    0.12-0.40       none      clean
``exercise``   25-55  110-160   none    0.12-0.30       none      motion
``ectopic``    45-80  55-85     low     0.25-0.40       5-15 %    clean
``noisy``      30-70  55-90     low     0.25-0.40       none      wrist sensor
=============  =====  ========  ======  ==============  ========  ==================

``v1-cohort`` is the narrow cohort the bundled model ``rhythm-ppg`` 1.0.0 is trained on
(``train_default_model.py``; its model card describes it): middle-aged adults at rest, a
clean fingertip sensor, no premature beats, pronounced irregularity when irregular.
``reference`` is the same population met again in the fleet (new people): the subgroup on
which the fleet-trained model must not be worse. The others are what the bundled model never
saw: strong breathing-driven variability in the young, milder irregularity in the older and
under exercise, exercise heart rates, premature beats, a noisier wrist sensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 64
DURATION_S = 30
LABELS = ("regular", "irregular")


@dataclass(frozen=True)
class Cohort:
    """Ranges a person's traits are drawn from (uniform, inclusive)."""

    name: str
    ages: tuple[int, int]
    hr: tuple[float, float]
    # Peak-to-peak RSA as a fraction of the mean interval.
    rsa: tuple[float, float]
    # Relative spread of an irregular rhythm's intervals (uniform +-irregularity).
    irregularity: tuple[float, float]
    # Share of sinus beats that are premature.
    ectopic: tuple[float, float]
    # Relative amplitude of motion artifact, baseline drift and white sensor noise.
    motion: tuple[float, float]
    drift: tuple[float, float]
    noise: tuple[float, float]
    description: str


CLEAN = dict(motion=(0.0, 0.1), drift=(0.0, 0.3), noise=(0.0, 0.02))

COHORTS: dict[str, Cohort] = {
    c.name: c
    for c in [
        Cohort("v1-cohort", (40, 64), (55, 85), (0.02, 0.10), (0.25, 0.40), (0, 0), **CLEAN,
               description="adults 40-64 at rest, clean fingertip sensor, no premature beats"),
        Cohort("reference", (40, 64), (55, 85), (0.02, 0.10), (0.25, 0.40), (0, 0), **CLEAN,
               description="new people from the bundled model's own cohort"),
        Cohort("young", (18, 29), (55, 80), (0.15, 0.30), (0.25, 0.40), (0, 0), **CLEAN,
               description="18-29, strong breathing-driven variability (RSA)"),
        Cohort("older", (65, 85), (55, 85), (0.0, 0.03), (0.12, 0.40), (0, 0), **CLEAN,
               description="65-85, little sinus variability, milder irregularity"),
        Cohort("exercise", (25, 55), (110, 160), (0.0, 0.02), (0.12, 0.30), (0, 0),
               motion=(0.05, 0.2), drift=(0.1, 0.4), noise=(0.01, 0.03),
               description="checks during or right after exercise, 110-160 bpm"),
        Cohort("ectopic", (45, 80), (55, 85), (0.02, 0.10), (0.20, 0.40), (0.15, 0.35), **CLEAN,
               description="sinus rhythm with 15-35 % premature (ectopic) beats"),
        Cohort("noisy", (30, 70), (55, 90), (0.02, 0.10), (0.25, 0.40), (0, 0),
               motion=(0.3, 0.6), drift=(0.3, 0.8), noise=(0.05, 0.15),
               description="a wrist sensor: more motion, drift and sensor noise"),
    ]
}
# The subgroups of the demo's fleet, in the order they are assigned to devices.
FLEET = ("reference", "young", "older", "exercise", "ectopic", "noisy")
# Subgroups whose rhythm features lie outside what the narrow cohort covers in a way that
# moves a regular/irregular boundary learnt on it: strong breathing-driven variability
# (regular checks as variable as the cohort's irregular ones), exercise heart rates (an
# irregular rhythm's intervals vary by fewer milliseconds), frequent premature beats (flagged
# beats in a regular rhythm). The demo's acceptance is stated on these.
SHIFTED = ("young", "exercise", "ectopic")


@dataclass(frozen=True)
class Person:
    cohort: str
    age: int
    hr: float
    rsa: float
    irregularity: float
    ectopic: float
    motion: float
    drift: float
    noise: float
    breath_hz: float


def person(cohort: str, rng: np.random.Generator) -> Person:
    c = COHORTS[cohort]
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    return Person(
        cohort=cohort,
        age=int(rng.integers(c.ages[0], c.ages[1] + 1)),
        hr=u(c.hr),
        rsa=u(c.rsa),
        irregularity=u(c.irregularity),
        ectopic=u(c.ectopic),
        motion=u(c.motion),
        drift=u(c.drift),
        noise=u(c.noise),
        breath_hz=u((0.3, 0.45) if cohort == "exercise" else (0.15, 0.3)),
    )


def beat_times(p: Person, irregular: bool, rng: np.random.Generator, duration: float = DURATION_S) -> np.ndarray:
    """Onset times (s) of the beats of one check, starting at 0."""
    hr = p.hr * float(rng.uniform(0.95, 1.05))  # the person's rate on that day
    period = 60.0 / hr
    phase = float(rng.uniform(0, 2 * np.pi))
    times = [0.0]
    pending_pause = 0.0
    while times[-1] < duration + 2 * period:
        t = times[-1]
        if irregular:
            rr = period * (1.0 + float(rng.uniform(-p.irregularity, p.irregularity)))
        elif pending_pause:
            rr, pending_pause = pending_pause, 0.0
        else:
            rr = period * (1.0 + 0.5 * p.rsa * np.sin(2 * np.pi * p.breath_hz * t + phase))
            rr *= 1.0 + float(rng.normal(0.0, 0.01))
            if p.ectopic and rng.random() < p.ectopic:
                coupling = float(rng.uniform(0.55, 0.75))
                # Premature beat, then a compensatory pause: the pair lasts two sinus intervals.
                pending_pause = rr * (2.0 - coupling)
                rr *= coupling
        times.append(t + max(rr, 0.25))
    return np.asarray(times)


def render(onsets: np.ndarray, p: Person, rng: np.random.Generator, duration: float = DURATION_S, rate: int = RATE) -> np.ndarray:
    """The PPG of beats starting at ``onsets``: ``ppg_simulate``'s landmarks and distortions."""
    import neurokit2 as nk

    periods = np.diff(onsets)
    x_onset = onsets[:-1]
    n = len(periods)
    y_onset = rng.normal(0, 0.1, n)
    x_sys = x_onset + rng.normal(0.175, 0.01, n) * periods
    y_sys = y_onset + rng.normal(1.5, 0.15, n)
    x_notch = x_onset + rng.normal(0.4, 0.001, n) * periods
    y_notch = y_sys * rng.normal(0.49, 0.01, n)
    x_dia = x_onset + rng.normal(0.45, 0.001, n) * periods
    y_dia = y_sys * rng.normal(0.51, 0.01, n)
    x_all = np.concatenate((x_onset, x_sys, x_notch, x_dia))
    y_all = np.concatenate((y_onset, y_sys, y_notch, y_dia))
    order = np.argsort(x_all, kind="mergesort")
    x_all = np.ceil(x_all[order] * rate).astype(int)
    y_all = y_all[order]
    x_all, keep = np.unique(x_all, return_index=True)
    y_all = y_all[keep]
    samples = np.arange(int(np.ceil(duration * rate)))
    ppg = nk.signal_interpolate(x_values=x_all, y_values=y_all, x_new=samples, method="akima")
    ppg[np.isnan(ppg)] = np.nanmean(ppg)
    seeds = rng.integers(1 << 31, size=3)
    if p.drift > 0:
        ppg = nk.signal_distort(ppg, sampling_rate=rate, noise_amplitude=p.drift,
                                noise_frequency=max(0.05, 2 / duration), random_state=int(seeds[0]), silent=True)
    if p.motion > 0:
        ppg = nk.signal_distort(ppg, sampling_rate=rate, noise_amplitude=p.motion, noise_frequency=0.5,
                                random_state=int(seeds[1]), silent=True)
    if p.noise > 0:
        ppg = ppg + np.random.default_rng(int(seeds[2])).normal(0.0, p.noise * float(np.std(ppg)), len(ppg))
    return np.asarray(ppg, dtype=np.float64)


def check(p: Person, irregular: bool, rng: np.random.Generator) -> np.ndarray:
    """One 30 s check of person ``p`` at 64 Hz."""
    return render(beat_times(p, irregular, rng), p, rng)


def simulate_cohort(cohort: str, people: int, checks: int, seed: int):
    """``people`` persons of ``cohort``, ``checks`` checks each, half of them irregular (a person
    with paroxysmal AF has regular and irregular checks). Yields ``(person_index, person,
    label, signal)`` person by person."""
    rng = np.random.default_rng([seed, sum(map(ord, cohort))])
    for i in range(people):
        p = person(cohort, rng)
        first = int(rng.integers(2))
        for k in range(checks):
            irregular = (k + first) % 2 == 1
            yield i, p, LABELS[int(irregular)], check(p, irregular, rng)
