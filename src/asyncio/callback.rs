//! Which callback a loop is running: the `Handle` in `Handle._run`'s frame, unwrapped to the
//! function it calls (through bound methods, `functools.partial` and task-step wrappers),
//! and the task when the callback is a task step.

use serde::Serialize;

use crate::process::memory::Memory;
use crate::python::frames::{self, FrameRef, StackReader};
use crate::python::reader::{Error, ObjectReader, Result};

/// How deep to unwrap nested callables (`partial(partial(method))`).
const MAX_UNWRAP: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackKind {
    /// A plain function or method scheduled with `call_soon`/`call_later`.
    Function,
    /// One step of a task: its coroutine runs until the next `await` that suspends it.
    TaskStep,
    /// Something else callable (a builtin, an object with `__call__`).
    Other,
}

/// A callback, described by name only (never by argument values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub kind: CallbackKind,
    /// The qualified name of the function that runs; for a task step, the task's coroutine.
    pub qualname: String,
    /// The task, for a task step.
    pub task: Option<u64>,
}

/// The `Handle` being run by the loop whose thread has these frames (innermost first).
pub fn running_handle<M: Memory>(r: &ObjectReader<M>, names: &mut StackReader, frames: &[FrameRef]) -> Result<Option<u64>> {
    for f in frames {
        let info = names.code_info(r, f.code)?;
        if info.name == "_run" && is_asyncio_file(&info.filename, "events.py") {
            let handle = frames::local(r, f, 0)?;
            let tp = r.type_of(handle)?;
            if !r.is_subclass_by_name(tp, "Handle")? {
                return Err(Error::invalid(handle, "self of Handle._run is not a Handle"));
            }
            return Ok(Some(handle));
        }
    }
    Ok(None)
}

fn is_asyncio_file(path: &str, file: &str) -> bool {
    path.ends_with(&format!("asyncio/{file}"))
}

/// Describe the callback of a `Handle`.
pub fn describe_handle<M: Memory>(r: &ObjectReader<M>, handle: u64) -> Result<Callback> {
    let tp = r.type_of(handle)?;
    let off = r.slot_offset(tp, "_callback")?.ok_or_else(|| Error::invalid(handle, "Handle has no _callback slot"))?;
    describe(r, r.obj_ptr(handle + off)?)
}

/// Describe any callable.
pub fn describe<M: Memory>(r: &ObjectReader<M>, callable: u64) -> Result<Callback> {
    let mut obj = callable;
    for _ in 0..MAX_UNWRAP {
        let c = r.layout().callables;
        let info = r.type_info_of(obj)?;
        // Only the interpreter's own (static) types count: a user class may be called
        // `function` too.
        let builtin =
            if info.has(crate::python::reader::flags::HEAPTYPE) && !info.name.starts_with("_asyncio.") { "" } else { info.name.as_str() };
        match builtin {
            "function" => {
                return Ok(Callback { kind: CallbackKind::Function, qualname: r.name(r.obj_ptr(obj + c.func_qualname)?)?, task: None })
            }
            "method" => {
                let this = r.obj_ptr(obj + c.method_self)?;
                if is_task(r, this)? {
                    return task_step(r, this);
                }
                obj = r.obj_ptr(obj + c.method_func)?;
            }
            "functools.partial" => obj = r.obj_ptr(obj + c.partial_fn)?,
            // Task steps and wake-ups are small C objects whose first field is the task
            // (`TaskStepMethWrapper`, and until 3.11 `TaskWakeupMethWrapper`).
            "TaskStepMethWrapper" | "TaskWakeupMethWrapper" | "_asyncio.TaskStepMethWrapper" | "_asyncio.TaskWakeupMethWrapper" => {
                return task_step(r, r.obj_ptr(obj + r.layout().object.head)?);
            }
            "builtin_function_or_method" => {
                let this = r.ptr(obj + c.cfunc_self)?;
                if this != 0 && is_task(r, this)? {
                    return task_step(r, this);
                }
                let def = r.data_ptr(obj + c.cfunc_def)?;
                let name = r.c_string(r.data_ptr(def)?, 256)?;
                let qualname = match this {
                    0 => name,
                    this => match r.type_name(this)?.as_str() {
                        "module" => name,
                        owner => format!("{}.{name}", short_type_name(owner)),
                    },
                };
                return Ok(Callback { kind: CallbackKind::Other, qualname, task: None });
            }
            _ => {
                let qualname = format!("<{} object>", short_type_name(&info.name));
                return Ok(Callback { kind: CallbackKind::Other, qualname, task: None });
            }
        }
    }
    Err(Error::invalid(callable, "callable nests too deeply"))
}

fn short_type_name(tp_name: &str) -> &str {
    tp_name.rsplit('.').next().unwrap_or(tp_name)
}

fn task_step<M: Memory>(r: &ObjectReader<M>, task: u64) -> Result<Callback> {
    Ok(Callback { kind: CallbackKind::TaskStep, qualname: task_coro_qualname(r, task)?, task: Some(task) })
}

/// Is `obj` an asyncio Task (the C `_asyncio.Task`, the pure-Python `Task`, or a subclass)?
pub fn is_task<M: Memory>(r: &ObjectReader<M>, obj: u64) -> Result<bool> {
    let tp = r.type_of(obj)?;
    Ok(is_c_task_type(r, tp)? || r.is_subclass_by_name(tp, "Task")?)
}

fn is_c_task_type<M: Memory>(r: &ObjectReader<M>, tp: u64) -> Result<bool> {
    r.is_subclass_by_name(tp, "_asyncio.Task")
}

/// The coroutine object a task drives.
pub fn task_coro<M: Memory>(r: &ObjectReader<M>, task: u64) -> Result<u64> {
    if is_c_task_type(r, r.type_of(task)?)? {
        r.obj_ptr(task + r.layout().asyncio.task_coro)
    } else {
        r.attr(task, "_coro")
    }
}

/// `task.get_coro().__qualname__`, or the coroutine's type name when it is not a native
/// coroutine (a Cython or generator-based one).
pub fn task_coro_qualname<M: Memory>(r: &ObjectReader<M>, task: u64) -> Result<String> {
    let coro = task_coro(r, task)?;
    let tp = r.type_name(coro)?;
    if tp == "coroutine" {
        return r.name(r.obj_ptr(coro + r.layout().coro.qualname)?);
    }
    Ok(format!("<{} object>", short_type_name(&tp)))
}

/// `task.get_name()`. From 3.12 the name is stored lazily as the int N of `Task-N`.
pub fn task_name<M: Memory>(r: &ObjectReader<M>, task: u64) -> Result<String> {
    let name = if is_c_task_type(r, r.type_of(task)?)? { r.obj_ptr(task + r.layout().asyncio.task_name)? } else { r.attr(task, "_name")? };
    match r.type_name(name)?.as_str() {
        "int" => Ok(format!("Task-{}", r.int(name)?)),
        _ => r.name(name),
    }
}
