// Vite turns `import "./styles.css"` into the stylesheet link of the built page.
declare module "*.css";
