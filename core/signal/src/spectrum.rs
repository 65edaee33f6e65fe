//! Spectral estimation: radix-2 FFT, Welch periodogram, natural cubic spline.

use std::f64::consts::PI;

/// In-place iterative radix-2 FFT of `(re, im)`; length must be a power of two.
pub(crate) fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    debug_assert!(n.is_power_of_two() && im.len() == n);
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let ang = -2.0 * PI / len as f64;
        let (wr, wi) = (ang.cos(), ang.sin());
        for start in (0..n).step_by(len) {
            let (mut cr, mut ci) = (1.0, 0.0);
            for k in 0..len / 2 {
                let (a, b) = (start + k, start + k + len / 2);
                let tr = re[b] * cr - im[b] * ci;
                let ti = re[b] * ci + im[b] * cr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
                let ncr = cr * wr - ci * wi;
                ci = cr * wi + ci * wr;
                cr = ncr;
            }
        }
        len <<= 1;
    }
}

/// One-sided power spectral density (units²/Hz) by Welch's method: Hann windows of
/// `nperseg` samples, 50 % overlap, each segment mean-removed, zero-padded to `nfft`
/// (a power of two >= `nperseg`), averaged. Returns `(frequency resolution, psd)`.
pub(crate) fn welch(x: &[f64], rate_hz: f64, nperseg: usize, nfft: usize) -> (f64, Vec<f64>) {
    let nperseg = nperseg.min(x.len()).max(1);
    let step = (nperseg / 2).max(1);
    let window: Vec<f64> = (0..nperseg)
        .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / nperseg as f64).cos())
        .collect();
    let wss: f64 = window.iter().map(|w| w * w).sum();
    let mut psd = vec![0.0; nfft / 2 + 1];
    let (mut re, mut im) = (vec![0.0; nfft], vec![0.0; nfft]);
    let mut segments = 0usize;
    let mut start = 0;
    while start + nperseg <= x.len() {
        let seg = &x[start..start + nperseg];
        let mean = seg.iter().sum::<f64>() / nperseg as f64;
        re.fill(0.0);
        im.fill(0.0);
        for ((r, v), w) in re.iter_mut().zip(seg).zip(&window) {
            *r = (v - mean) * w;
        }
        fft(&mut re, &mut im);
        for (k, p) in psd.iter_mut().enumerate() {
            *p += re[k] * re[k] + im[k] * im[k];
        }
        segments += 1;
        start += step;
    }
    let scale = 1.0 / (rate_hz * wss * segments.max(1) as f64);
    let last = psd.len() - 1;
    for (k, p) in psd.iter_mut().enumerate() {
        *p *= if k == 0 || k == last {
            scale
        } else {
            2.0 * scale
        };
    }
    (rate_hz / nfft as f64, psd)
}

/// Integral of a PSD over `[lo, hi)` Hz.
pub(crate) fn band_power(df: f64, psd: &[f64], lo: f64, hi: f64) -> f64 {
    psd.iter()
        .enumerate()
        .filter(|(k, _)| {
            let f = *k as f64 * df;
            f >= lo && f < hi
        })
        .map(|(_, p)| p * df)
        .sum()
}

/// Natural cubic spline through `(t, y)` (t strictly increasing, >= 2 points) evaluated at
/// `t[0] + k / rate` up to `t[last]`.
pub(crate) fn spline_resample(t: &[f64], y: &[f64], rate_hz: f64) -> Vec<f64> {
    let n = t.len();
    // Second derivatives by the tridiagonal system of a natural spline (Thomas algorithm).
    let mut m = vec![0.0; n];
    if n > 2 {
        let mut c = vec![0.0; n];
        let mut d = vec![0.0; n];
        for i in 1..n - 1 {
            let h0 = t[i] - t[i - 1];
            let h1 = t[i + 1] - t[i];
            let a = h0;
            let b = 2.0 * (h0 + h1);
            let rhs = 6.0 * ((y[i + 1] - y[i]) / h1 - (y[i] - y[i - 1]) / h0);
            let denom = b - a * c[i - 1];
            c[i] = h1 / denom;
            d[i] = (rhs - a * d[i - 1]) / denom;
        }
        for i in (1..n - 1).rev() {
            m[i] = d[i] - c[i] * m[i + 1];
        }
    }
    let count = ((t[n - 1] - t[0]) * rate_hz + 1e-9).floor() as usize + 1;
    let mut out = Vec::with_capacity(count);
    let mut j = 0;
    for k in 0..count {
        let tk = t[0] + k as f64 / rate_hz;
        while j + 2 < n && t[j + 1] < tk {
            j += 1;
        }
        let h = t[j + 1] - t[j];
        let a = (t[j + 1] - tk) / h;
        let b = (tk - t[j]) / h;
        out.push(
            a * y[j]
                + b * y[j + 1]
                + ((a * a * a - a) * m[j] + (b * b * b - b) * m[j + 1]) * h * h / 6.0,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_of_a_cosine_has_two_bins() {
        let n = 64;
        let mut re: Vec<f64> = (0..n)
            .map(|i| (2.0 * PI * 5.0 * i as f64 / n as f64).cos())
            .collect();
        let mut im = vec![0.0; n];
        fft(&mut re, &mut im);
        for k in 0..n {
            let mag = (re[k] * re[k] + im[k] * im[k]).sqrt();
            let expected = if k == 5 || k == n - 5 { 32.0 } else { 0.0 };
            assert!((mag - expected).abs() < 1e-9, "bin {k}");
        }
    }

    #[test]
    fn welch_power_of_a_sine_is_half_amplitude_squared() {
        let fs = 4.0;
        let x: Vec<f64> = (0..1200)
            .map(|i| 30.0 * (2.0 * PI * 0.25 * i as f64 / fs).sin())
            .collect();
        let (df, psd) = welch(&x, fs, 256, 256);
        let p = band_power(df, &psd, 0.15, 0.4);
        assert!((p - 450.0).abs() / 450.0 < 0.02, "power {p}");
    }

    #[test]
    fn spline_reproduces_a_cubic_inside_and_is_exact_on_knots() {
        let t: Vec<f64> = (0..30)
            .map(|i| i as f64 * 0.7 + (i % 3) as f64 * 0.1)
            .collect();
        let y: Vec<f64> = t.iter().map(|x| (x * 0.3).sin()).collect();
        let r = spline_resample(&t, &y, 10.0);
        for (k, v) in r.iter().enumerate() {
            let tk = t[0] + k as f64 / 10.0;
            if tk > 3.0 && tk < 17.0 {
                assert!((v - (tk * 0.3).sin()).abs() < 1e-3);
            }
        }
        assert!((r[0] - y[0]).abs() < 1e-12);
    }
}
