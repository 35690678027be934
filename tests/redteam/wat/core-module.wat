;; A core module, not a component: refused at load.
(module (func (export "run")))
