//! A walk through the store: create, component scopes, dirty saves,
//! persistence across a reopen, and destroy.
//!
//! `cargo run --release --example tour [PATH]` (default: `./sessionstore-tour`).

use sessionstore::Store;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sessionstore-tour".into());
    println!("1. open the store at {path}");
    let store = Store::open(&path)?;

    let mut session = store.create()?;
    let sid = session.id().to_owned();
    println!("2. create a session with a fresh random id: {sid}");

    session.set("user", "ada")?;
    session.set("visits", &1u32)?;
    println!(
        "3. set two keys in the global scope; dirty = {}",
        session.is_dirty()
    );
    store.save(&mut session)?;
    println!(
        "   save writes them in one atomic batch; dirty = {}",
        session.is_dirty()
    );

    let mut cart = store
        .get(&sid, Some("cart"))?
        .ok_or("the session vanished")?;
    println!(
        "4. the \"cart\" component's scope starts empty: {} keys",
        cart.len()
    );
    cart.set("items", &vec!["book", "pen"])?;
    store.save(&mut cart)?;

    let mut a = store.get(&sid, None)?.ok_or("the session vanished")?;
    let mut b = store.get(&sid, None)?.ok_or("the session vanished")?;
    a.set("visits", &2u32)?;
    b.set("theme", "dark")?;
    store.save(&mut a)?;
    store.save(&mut b)?;
    println!(
        "5. two handles save different keys; only dirty keys are written, so both changes stay"
    );

    drop(store);
    let store = Store::open(&path)?;
    let global = store
        .get(&sid, None)?
        .ok_or("the session did not survive the reopen")?;
    let cart = store
        .get(&sid, Some("cart"))?
        .ok_or("the session vanished")?;
    println!(
        "6. after a reopen: user = {:?}, visits = {:?}, theme = {:?}, cart = {:?}",
        global.get::<String>("user")?,
        global.get::<u32>("visits")?,
        global.get::<String>("theme")?,
        cart.get::<Vec<String>>("items")?
    );

    let new_id = store.regenerate(&sid)?;
    println!("7. regenerate moves the session to a new id on login: {new_id}");
    println!(
        "   the old id now reads {:?}",
        store.get(&sid, None)?.map(|s| s.len())
    );

    let existed = store.destroy(&new_id)?;
    println!(
        "8. destroy: existed = {existed}; it now reads {:?}",
        store.get(&new_id, None)?.map(|s| s.len())
    );
    let stats = store.stats()?;
    println!(
        "9. stats: {} live sessions, {} bytes on disk ({})",
        stats.live_sessions,
        stats.bytes_on_disk,
        stats.engine.map_or("redis", |e| e.name())
    );
    Ok(())
}
