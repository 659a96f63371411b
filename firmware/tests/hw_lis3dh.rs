#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! LIS3DH driver against a mocked I2C bus.

use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as T};
use firmware::hw::lis3dh::{AccelMg, Config, Error, FullScale, Lis3dh, Mode, Odr, SlaveAddr};

const ADDR: u8 = 0x18;

fn init_transactions(addr: u8) -> Vec<T> {
    vec![
        T::write_read(addr, vec![0x0F], vec![0x33]),
        // ODR 100 Hz (0101), LPen 0, Z/Y/X on.
        T::write(addr, vec![0x20, 0x57]),
        // BDU, FS ±8 g (10), HR.
        T::write(addr, vec![0x23, 0xA8]),
    ]
}

#[test]
fn init_checks_identity_and_configures_100hz_8g_hr_bdu() {
    let mut i2c = I2cMock::new(&init_transactions(ADDR));
    let mut acc = Lis3dh::new(i2c.clone(), SlaveAddr::Sa0Low);
    acc.init(Config::default()).unwrap();
    assert_eq!(
        acc.config(),
        Config {
            odr: Odr::Hz100,
            full_scale: FullScale::G8,
            mode: Mode::HighResolution
        }
    );
    i2c.done();
}

#[test]
fn sa0_high_uses_0x19() {
    let mut i2c = I2cMock::new(&init_transactions(0x19));
    let mut acc = Lis3dh::new(i2c.clone(), SlaveAddr::Sa0High);
    acc.init(Config::default()).unwrap();
    i2c.done();
}

#[test]
fn wrong_who_am_i_is_a_typed_error_and_nothing_is_written() {
    let mut i2c = I2cMock::new(&[T::write_read(ADDR, vec![0x0F], vec![0x32])]);
    let mut acc = Lis3dh::new(i2c.clone(), SlaveAddr::Sa0Low);
    assert_eq!(acc.init(Config::default()), Err(Error::WrongDevice { found: 0x32 }));
    i2c.done();
}

#[test]
fn bus_errors_are_wrapped() {
    let mut i2c = I2cMock::new(&[
        T::write_read(ADDR, vec![0x0F], vec![0x33]).with_error(ErrorKind::Other),
        T::write_read(ADDR, vec![0xA8], vec![0; 6]).with_error(ErrorKind::Other),
    ]);
    let mut acc = Lis3dh::new(i2c.clone(), SlaveAddr::Sa0Low);
    assert_eq!(acc.init(Config::default()), Err(Error::Bus(ErrorKind::Other)));
    assert_eq!(acc.read_mg(), Err(Error::Bus(ErrorKind::Other)));
    i2c.done();
}

#[test]
fn read_mg_uses_one_auto_increment_burst_and_scales_at_8g() {
    let mut t = init_transactions(ADDR);
    // x = +250 digits (+1000 mg), y = -250 (-1000 mg), z = +2047 (full scale, 8188 mg),
    // each left-justified with junk in the low nibble the driver must ignore.
    let x = ((250i16 << 4) | 0x3).to_le_bytes();
    let y = (-250i16 << 4).to_le_bytes();
    let z = (2047i16 << 4).to_le_bytes();
    t.push(T::write_read(
        ADDR,
        vec![0x28 | 0x80],
        vec![x[0], x[1], y[0], y[1], z[0], z[1]],
    ));
    let mut i2c = I2cMock::new(&t);
    let mut acc = Lis3dh::new(i2c.clone(), SlaveAddr::Sa0Low);
    acc.init(Config::default()).unwrap();
    assert_eq!(
        acc.read_mg().unwrap(),
        AccelMg {
            x: 1000,
            y: -1000,
            z: 8188
        }
    );
    i2c.done();
}

#[test]
fn sensitivity_follows_full_scale_and_mode() {
    // ±2 g high resolution: 1 mg/digit. ±16 g: 12 mg/digit. ±4 g normal (10-bit): 8 mg/digit.
    let cases = [
        (
            FullScale::G2,
            Mode::HighResolution,
            0x88u8,
            0x57u8,
            1000i16 << 4,
            1000i16,
        ),
        (FullScale::G16, Mode::HighResolution, 0xB8, 0x57, -100 << 4, -1200),
        (FullScale::G4, Mode::Normal, 0x90, 0x57, 125 << 6, 1000),
        (FullScale::G2, Mode::LowPower, 0x80, 0x5F, 64 << 8, 1024),
    ];
    for (fs, mode, reg4, reg1, raw, mg) in cases {
        let b = raw.to_le_bytes();
        let mut i2c = I2cMock::new(&[
            T::write(ADDR, vec![0x20, reg1]),
            T::write(ADDR, vec![0x23, reg4]),
            T::write_read(ADDR, vec![0xA8], vec![b[0], b[1], b[0], b[1], b[0], b[1]]),
        ]);
        let mut acc = Lis3dh::new(i2c.clone(), SlaveAddr::Sa0Low);
        acc.configure(Config {
            odr: Odr::Hz100,
            full_scale: fs,
            mode,
        })
        .unwrap();
        assert_eq!(
            acc.read_mg().unwrap(),
            AccelMg { x: mg, y: mg, z: mg },
            "{fs:?} {mode:?}"
        );
        i2c.done();
    }
}

#[test]
fn data_ready_reads_zyxda() {
    let mut i2c = I2cMock::new(&[
        T::write_read(ADDR, vec![0x27], vec![0x08]),
        T::write_read(ADDR, vec![0x27], vec![0x07]),
    ]);
    let mut acc = Lis3dh::new(i2c.clone(), SlaveAddr::Sa0Low);
    assert!(acc.data_ready().unwrap());
    assert!(!acc.data_ready().unwrap());
    i2c.done();
}

/// Polls a future that never waits (the mock answers at once) without an executor.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn async_driver_sends_the_same_bytes() {
    use firmware::hw::lis3dh::Lis3dhAsync;
    let mut t = init_transactions(ADDR);
    t.push(T::write_read(ADDR, vec![0x27], vec![0x08]));
    let one_g = (250i16 << 4).to_le_bytes();
    t.push(T::write_read(ADDR, vec![0xA8], vec![0, 0, 0, 0, one_g[0], one_g[1]]));
    t.push(T::write_read(ADDR, vec![0x0F], vec![0x00]));
    let mut i2c = I2cMock::new(&t);
    let mut acc = Lis3dhAsync::new(i2c.clone(), SlaveAddr::Sa0Low);
    block_on(async {
        acc.init(Config::default()).await.unwrap();
        assert!(acc.data_ready().await.unwrap());
        assert_eq!(acc.read_mg().await.unwrap(), AccelMg { x: 0, y: 0, z: 1000 });
        assert_eq!(acc.init(Config::default()).await, Err(Error::WrongDevice { found: 0 }));
    });
    i2c.done();
}
