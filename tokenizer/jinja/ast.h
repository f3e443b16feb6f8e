// The parsed template: expressions and statements, mirroring jinja2's node types. Nodes
// carry their source line so that every runtime error can name it.
#ifndef LATTICE_TOKENIZER_JINJA_AST_H_
#define LATTICE_TOKENIZER_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace lattice::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class ExprKind {
  kConst,     // constant
  kName,      // name
  kList,      // children: items
  kTuple,     // children: items
  kDict,      // children: key, value, key, value, ...
  kGetattr,   // children[0].name
  kGetitem,   // children[0][children[1]]
  kSlice,     // children: start, stop, step (each may be null); only inside kGetitem
  kCall,      // children[0](children[1:], kwargs, *dyn_args, **dyn_kwargs)
  kFilter,    // children[0] | name(children[1:], kwargs); children[0] null in filter blocks
  kTest,      // children[0] is name(children[1:], kwargs)
  kNeg,       // -children[0]
  kPos,       // +children[0]
  kNot,       // not children[0]
  kAnd,       // children[0] and children[1]
  kOr,        // children[0] or children[1]
  kBinary,    // children[0] <name> children[1]; name in + - * / // % **
  kConcat,    // children joined with ~
  kCompare,   // children[0] ops[0] children[1] ops[1] children[2] ...
  kCondExpr,  // children[1] if children[0] else children[2] (children[2] may be null)
  kNsRef,     // assignment target name.attr (set ns.attr = ...)
};

struct Expr {
  ExprKind kind;
  int line = 0;
  Value constant;
  std::string name;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr dyn_args;
  ExprPtr dyn_kwargs;
  std::vector<std::string> ops;  // kCompare: == != < <= > >= in notin
};

enum class StmtKind {
  kText,         // text
  kPrint,        // {{ expr }}
  kIf,           // branches (test, body) ...; else_body
  kFor,          // for target in expr [if cond]: body; else else_body
  kSet,          // set target = expr
  kSetBlock,     // set target [| filter] ... endset: body
  kMacro,        // macro name(params = defaults): body
  kCallBlock,    // call(params) expr: body
  kFilterBlock,  // filter expr: body
  kWith,         // with assignments: body
  kBreak,
  kContinue,
  kScope,  // a body run as-is ({% generation %})
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;  // kText; kMacro: the macro's name
  ExprPtr target;    // kFor, kSet, kSetBlock
  ExprPtr expr;      // kPrint, kSet, kFor (iterable), kCallBlock (call), filter chains
  ExprPtr cond;      // kFor inline filter
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf
  Body body;
  Body else_body;
  // kMacro and kCallBlock parameters; defaults[i] is null when parameter i has none.
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;
  std::vector<std::pair<ExprPtr, ExprPtr>> assignments;  // kWith
  // kMacro: whether the body mentions these names, which lets calls pass extra
  // positional arguments, unknown keywords or a caller (as in jinja2).
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
  bool recursive = false;  // kFor
};

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_AST_H_
