//! Reports for managers (issue 9): the technology-enabled care uptake measure and the
//! monitoring KPIs. Pure functions of the register, the assignments, device activity and
//! alerts; the store and the command line feed them.

pub mod apply;
pub mod import;
pub mod kpi;
pub mod register;
pub mod render;
pub mod source;
pub mod suppress;
pub mod uptake;
