//! The one pass over a component that validates it and counts what its compile costs: sections
//! are counted before they are validated (a refusal reads no further than the count that passed
//! its limit), and each function body is validated operator by operator while its locals,
//! blocks, nesting, `br_table`s and operand stack are counted.
//!
//! Instantiations are counted as wasmtime flattens them: each component frame keeps its core
//! module and component index spaces with what instantiating each entry creates, so a component
//! instantiated `n` times inside another adds `n` times its own instances. An entry whose
//! definition is not visible here (imported by a nested component, or exported by an instance)
//! counts as the largest module or component seen so far: what its parent could have passed.

use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind,
    ComponentTypeRef, Encoding, FuncValidator, FunctionBody, Instance, Operator, Parser, Payload,
    ValidPayload, Validator, ValidatorResources,
};

use super::{CompileLimits, Complexity, Limit, TooComplex, engine_features};
use crate::engine::EngineError;

/// What one instantiation of a core module defines.
#[derive(Debug, Clone, Copy, Default)]
struct ModuleCost {
    memories: u64,
    tables: u64,
}

/// What one instantiation of a component creates, nested components expanded.
#[derive(Debug, Clone, Copy, Default)]
struct ComponentCost {
    core_instances: u64,
    memories: u64,
    tables: u64,
    items: u64,
}

impl ComponentCost {
    fn add(&mut self, other: ComponentCost) {
        self.core_instances = self.core_instances.saturating_add(other.core_instances);
        self.memories = self.memories.saturating_add(other.memories);
        self.tables = self.tables.saturating_add(other.tables);
        self.items = self.items.saturating_add(other.items);
    }

    fn widest(self, other: ComponentCost) -> ComponentCost {
        ComponentCost {
            core_instances: self.core_instances.max(other.core_instances),
            memories: self.memories.max(other.memories),
            tables: self.tables.max(other.tables),
            items: self.items.max(other.items),
        }
    }
}

enum Frame {
    Module {
        number: u64,
        defines: ModuleCost,
        functions_done: u64,
    },
    Component {
        modules: Vec<ModuleCost>,
        components: Vec<ComponentCost>,
        creates: ComponentCost,
    },
}

struct Walk<'a> {
    limits: &'a CompileLimits,
    found: Complexity,
    stack: Vec<Frame>,
    widest_module: ModuleCost,
    widest_component: ComponentCost,
    modules_seen: u64,
}

fn invalid(e: wasmparser::BinaryReaderError) -> EngineError {
    EngineError::Invalid(e.to_string())
}

fn refuse(limit: Limit, found: u64, limits: &CompileLimits, place: Option<String>) -> EngineError {
    EngineError::TooComplex(TooComplex {
        limit,
        found,
        max: limit.of(limits),
        place,
    })
}

/// Add `n` to the running count `total`, then check it against `limit`.
fn add(
    total: &mut u64,
    n: impl TryInto<u64>,
    limit: Limit,
    limits: &CompileLimits,
) -> Result<(), EngineError> {
    *total = total.saturating_add(n.try_into().unwrap_or(u64::MAX));
    if *total > limit.of(limits) {
        return Err(refuse(limit, *total, limits, None));
    }
    Ok(())
}

/// See [`super::check`].
pub(super) fn walk(bytes: &[u8], limits: &CompileLimits) -> Result<Complexity, EngineError> {
    let mut walk = Walk {
        limits,
        found: Complexity::default(),
        stack: Vec::new(),
        widest_module: ModuleCost::default(),
        widest_component: ComponentCost::default(),
        modules_seen: 0,
    };
    let mut validator = Validator::new_with_features(engine_features());
    let mut allocs = wasmparser::FuncValidatorAllocations::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(invalid)?;
        walk.count(&payload)?;
        if let ValidPayload::Func(func, body) = validator.payload(&payload).map_err(invalid)? {
            let mut func = func.into_validator(std::mem::take(&mut allocs));
            walk.function(&mut func, &body)?;
            allocs = func.into_allocations();
        }
    }
    Ok(walk.found)
}

impl Walk<'_> {
    fn count(&mut self, payload: &Payload<'_>) -> Result<(), EngineError> {
        use Limit::*;
        let l = self.limits;
        let f = &mut self.found;
        match payload {
            Payload::Version { encoding, .. } => return self.enter(*encoding),
            Payload::End(_) => self.leave(),
            Payload::TypeSection(s) => add(&mut f.types, s.count(), Types, l)?,
            Payload::ImportSection(s) => {
                let room = Imports.of(l).saturating_sub(f.imports).saturating_add(1);
                let n = s.clone().into_imports().take(room as usize).count();
                add(&mut f.imports, n, Imports, l)?;
            }
            Payload::FunctionSection(s) => add(&mut f.functions, s.count(), Functions, l)?,
            Payload::TableSection(s) => self.module_defines(0, s.count().into())?,
            Payload::MemorySection(s) => self.module_defines(s.count().into(), 0)?,
            Payload::GlobalSection(s) => add(&mut f.globals, s.count(), Globals, l)?,
            Payload::ExportSection(s) => add(&mut f.exports, s.count(), Exports, l)?,
            Payload::ElementSection(s) => {
                add(&mut f.element_segments, s.count(), ElementSegments, l)?;
                for element in s.clone() {
                    let n = match element.map_err(invalid)?.items {
                        wasmparser::ElementItems::Functions(r) => r.count(),
                        wasmparser::ElementItems::Expressions(_, r) => r.count(),
                    };
                    add(&mut f.element_items, n, ElementItems, l)?;
                }
            }
            Payload::DataSection(s) => {
                add(&mut f.data_segments, s.count(), DataSegments, l)?;
                for data in s.clone() {
                    add(
                        &mut f.data_bytes,
                        data.map_err(invalid)?.data.len(),
                        DataBytes,
                        l,
                    )?;
                }
            }
            Payload::CodeSectionStart { size, .. } => add(&mut f.code_bytes, *size, CodeBytes, l)?,
            Payload::CustomSection(s) => add(&mut f.custom_bytes, s.data().len(), CustomBytes, l)?,
            Payload::CoreTypeSection(s) => self.items(s.count())?,
            Payload::ComponentTypeSection(s) => self.items(s.count())?,
            Payload::ComponentCanonicalSection(s) => self.items(s.count())?,
            Payload::ComponentStartSection { .. } => self.items(1)?,
            Payload::ComponentImportSection(s) => {
                self.items(s.count())?;
                for import in s.clone() {
                    match import.map_err(invalid)?.ty {
                        ComponentTypeRef::Module(_) => self.push_module(None),
                        ComponentTypeRef::Component(_) => self.push_component(None),
                        _ => {}
                    }
                }
            }
            Payload::ComponentExportSection(s) => {
                self.items(s.count())?;
                for export in s.clone() {
                    let export = export.map_err(invalid)?;
                    match export.kind {
                        ComponentExternalKind::Module => self.push_module(Some((0, export.index))),
                        ComponentExternalKind::Component => {
                            self.push_component(Some((0, export.index)));
                        }
                        _ => {}
                    }
                }
            }
            Payload::ComponentAliasSection(s) => {
                self.items(s.count())?;
                for alias in s.clone() {
                    match alias.map_err(invalid)? {
                        ComponentAlias::InstanceExport { kind, .. } => match kind {
                            ComponentExternalKind::Module => self.push_module(None),
                            ComponentExternalKind::Component => self.push_component(None),
                            _ => {}
                        },
                        ComponentAlias::Outer { kind, count, index } => match kind {
                            ComponentOuterAliasKind::CoreModule => {
                                self.push_module(Some((count, index)));
                            }
                            ComponentOuterAliasKind::Component => {
                                self.push_component(Some((count, index)));
                            }
                            _ => {}
                        },
                        ComponentAlias::CoreInstanceExport { .. } => {}
                    }
                }
            }
            Payload::InstanceSection(s) => {
                self.items(s.count())?;
                for instance in s.clone() {
                    if let Instance::Instantiate { module_index, .. } = instance.map_err(invalid)? {
                        let module = self.module_at(0, module_index);
                        self.creates(ComponentCost {
                            core_instances: 1,
                            memories: module.memories,
                            tables: module.tables,
                            items: 0,
                        })?;
                    }
                }
            }
            Payload::ComponentInstanceSection(s) => {
                self.items(s.count())?;
                for instance in s.clone() {
                    if let ComponentInstance::Instantiate {
                        component_index, ..
                    } = instance.map_err(invalid)?
                    {
                        let component = self.component_at(0, component_index);
                        self.creates(component)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn enter(&mut self, encoding: Encoding) -> Result<(), EngineError> {
        let l = self.limits;
        match encoding {
            Encoding::Module => {
                add(&mut self.found.modules, 1, Limit::Modules, l)?;
                self.stack.push(Frame::Module {
                    number: self.modules_seen,
                    defines: ModuleCost::default(),
                    functions_done: 0,
                });
                self.modules_seen += 1;
            }
            Encoding::Component => {
                if !self.stack.is_empty() {
                    add(&mut self.found.components, 1, Limit::Components, l)?;
                }
                let depth = self.stack.len() as u64;
                self.found.component_depth = self.found.component_depth.max(depth);
                if depth > l.max_component_depth {
                    return Err(refuse(Limit::ComponentDepth, depth, l, None));
                }
                self.stack.push(Frame::Component {
                    modules: Vec::new(),
                    components: Vec::new(),
                    creates: ComponentCost::default(),
                });
            }
        }
        Ok(())
    }

    fn leave(&mut self) {
        match self.stack.pop() {
            Some(Frame::Module { defines, .. }) => {
                self.widest_module = ModuleCost {
                    memories: self.widest_module.memories.max(defines.memories),
                    tables: self.widest_module.tables.max(defines.tables),
                };
                if let Some(Frame::Component { modules, .. }) = self.stack.last_mut() {
                    modules.push(defines);
                }
            }
            Some(Frame::Component { creates, .. }) => {
                self.widest_component = self.widest_component.widest(creates);
                match self.stack.last_mut() {
                    Some(Frame::Component { components, .. }) => components.push(creates),
                    Some(Frame::Module { .. }) => {}
                    None => {
                        let found = &mut self.found;
                        found.core_instances = creates.core_instances;
                        found.memories = creates.memories;
                        found.tables = creates.tables;
                        found.component_items = creates.items;
                    }
                }
            }
            None => {}
        }
    }

    /// The component frame `outer` levels out from the innermost one.
    fn component_frame(&mut self, outer: u32) -> Option<&mut Frame> {
        let at = self.stack.len().checked_sub(1 + outer as usize)?;
        self.stack.get_mut(at)
    }

    fn module_at(&mut self, outer: u32, index: u32) -> ModuleCost {
        let widest = self.widest_module;
        match self.component_frame(outer) {
            Some(Frame::Component { modules, .. }) => {
                modules.get(index as usize).copied().unwrap_or(widest)
            }
            _ => widest,
        }
    }

    fn component_at(&mut self, outer: u32, index: u32) -> ComponentCost {
        let widest = self.widest_component;
        match self.component_frame(outer) {
            Some(Frame::Component { components, .. }) => {
                components.get(index as usize).copied().unwrap_or(widest)
            }
            _ => widest,
        }
    }

    /// A new entry in the current component's module index space: a copy of the one at
    /// `(outer, index)`, or the widest module seen when it is not known here.
    fn push_module(&mut self, from: Option<(u32, u32)>) {
        let cost = match from {
            Some((outer, index)) => self.module_at(outer, index),
            None => self.widest_module,
        };
        if let Some(Frame::Component { modules, .. }) = self.stack.last_mut() {
            modules.push(cost);
        }
    }

    fn push_component(&mut self, from: Option<(u32, u32)>) {
        let cost = match from {
            Some((outer, index)) => self.component_at(outer, index),
            None => self.widest_component,
        };
        if let Some(Frame::Component { components, .. }) = self.stack.last_mut() {
            components.push(cost);
        }
    }

    fn items(&mut self, n: u32) -> Result<(), EngineError> {
        self.creates(ComponentCost {
            items: n.into(),
            ..ComponentCost::default()
        })
    }

    /// Add `cost` to what one instantiation of the current component creates, and check it.
    /// Every frame is held to the limits, not only the outermost: a nested component that
    /// passes them could never be instantiated, and checking early keeps refusals cheap.
    fn creates(&mut self, cost: ComponentCost) -> Result<(), EngineError> {
        let Some(Frame::Component { creates, .. }) = self.stack.last_mut() else {
            return Ok(());
        };
        creates.add(cost);
        let now = *creates;
        for (limit, value) in [
            (Limit::CoreInstances, now.core_instances),
            (Limit::Memories, now.memories),
            (Limit::Tables, now.tables),
            (Limit::ComponentItems, now.items),
        ] {
            if value > limit.of(self.limits) {
                return Err(refuse(limit, value, self.limits, None));
            }
        }
        Ok(())
    }

    fn module_defines(&mut self, memories: u64, tables: u64) -> Result<(), EngineError> {
        let Some(Frame::Module { defines, .. }) = self.stack.last_mut() else {
            return Ok(());
        };
        defines.memories = defines.memories.saturating_add(memories);
        defines.tables = defines.tables.saturating_add(tables);
        let now = *defines;
        for (limit, value) in [(Limit::Memories, now.memories), (Limit::Tables, now.tables)] {
            if value > limit.of(self.limits) {
                return Err(refuse(limit, value, self.limits, None));
            }
        }
        Ok(())
    }

    /// Validate one function body while counting its locals, blocks, nesting and `br_table`s.
    fn function(
        &mut self,
        func: &mut FuncValidator<ValidatorResources>,
        body: &FunctionBody<'_>,
    ) -> Result<(), EngineError> {
        let place = match self.stack.last_mut() {
            Some(Frame::Module {
                number,
                functions_done,
                ..
            }) => {
                *functions_done += 1;
                format!(
                    "defined function {} of core module {number}",
                    *functions_done - 1
                )
            }
            _ => "a function".to_string(),
        };
        let l = self.limits;
        let check = |limit: Limit, found: u64| match found > limit.of(l) {
            true => Err(refuse(limit, found, l, Some(place.clone()))),
            false => Ok(()),
        };
        let size = body.range().len() as u64;
        self.found.largest_function = self.found.largest_function.max(size);
        check(Limit::FunctionSize, size)?;

        let mut locals_reader = body.get_locals_reader().map_err(invalid)?;
        let mut locals = u64::from(func.len_locals());
        for _ in 0..locals_reader.get_count() {
            let offset = locals_reader.original_position();
            let (count, ty) = locals_reader.read().map_err(invalid)?;
            locals = locals.saturating_add(count.into());
            self.found.most_locals = self.found.most_locals.max(locals);
            check(Limit::Locals, locals)?;
            func.define_locals(offset, count, ty).map_err(invalid)?;
        }

        let mut ops = body.get_operators_reader().map_err(invalid)?;
        let (mut blocks, mut depth) = (0u64, 0u64);
        while !ops.eof() {
            let (op, offset) = ops.read_with_offset().map_err(invalid)?;
            match &op {
                Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::Else
                | Operator::TryTable { .. } => {
                    blocks += 1;
                    if !matches!(op, Operator::Else) {
                        depth += 1;
                    }
                    let merges = blocks.saturating_mul(locals);
                    let found = &mut self.found;
                    found.most_blocks = found.most_blocks.max(blocks);
                    found.deepest_blocks = found.deepest_blocks.max(depth);
                    found.most_local_merges = found.most_local_merges.max(merges);
                    check(Limit::FunctionBlocks, blocks)?;
                    check(Limit::BlockDepth, depth)?;
                    check(Limit::FunctionLocalMerges, merges)?;
                    add(&mut found.blocks, 1, Limit::Blocks, l)?;
                    // One more block adds one lookup of every local to the function's work.
                    add(&mut found.local_merges, locals, Limit::LocalMerges, l)?;
                }
                Operator::End => depth = depth.saturating_sub(1),
                Operator::BrTable { targets } => {
                    let n = u64::from(targets.len());
                    self.found.largest_br_table = self.found.largest_br_table.max(n);
                    check(Limit::BrTableTargets, n)?;
                }
                _ => {}
            }
            func.op(offset, &op).map_err(invalid)?;
            let height = u64::from(func.operand_stack_height());
            if height > self.found.highest_stack {
                self.found.highest_stack = height;
                check(Limit::StackHeight, height)?;
            }
        }
        ops.finish().map_err(invalid)
    }
}
